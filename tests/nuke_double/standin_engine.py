#!/usr/bin/env python3
"""Stand-in ``hdmatt`` for the failure and cancel paths of the Nuke plugin tests only.

It speaks the real engine's JSON-log events (``nuke_hdmatt.shot.progress``). ``STANDIN_MODE``:

``fail``  frame A done, every later frame failed with ``plate.####.exr: truncated file``, exit 1
``crash`` print a one-line error, write no log, exit 2 (e.g. a bad colour space)
``hang``  emit progress for frame A then wait; on SIGINT write ``$STANDIN_MARK`` and exit 130
``stubborn`` ignore SIGINT, start a helper process, write "<own pid> <helper pid>" to
          ``$STANDIN_MARK``, start frame A's output as a temp file beside it (as
          ``atomic_path`` names them), emit progress until killed (a stop that only a kill ends)
``slow``  every frame: start, 3 patch progress events ``$STANDIN_STEP_S`` (0.05) s apart, done;
          after frame A, a pause of ``$STANDIN_PAUSE_S`` (0) s (time for a Cancel to land
          however loaded the machine is: a frame that finishes before it is rightly recorded)
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def main():
    argv = sys.argv[1:]
    opt = lambda name: argv[argv.index(name) + 1] if name in argv else None
    log_path = opt("--json-log")
    frames = opt("--frames") or next(a.split("=", 1)[1] for a in argv if a.startswith("--frames="))
    first, _, last = frames.partition("-")
    first, last = int(first), int(last or first)
    mode = os.environ.get("STANDIN_MODE", "fail")
    if mode == "crash":
        print("hdmatt: error: ACEScg-typo: unknown colour space", file=sys.stderr)
        return 2
    log = open(log_path, "a")

    def event(**kw):
        log.write(json.dumps(kw) + "\n")
        log.flush()

    if mode == "stubborn":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open(os.environ["STANDIN_MARK"], "w") as f:
            f.write(f"{os.getpid()} {helper.pid}")
        # (its Python may not see nuke_hdmatt: the name as atomic.temp_beside makes it)
        output = re.sub(r"#+|%0(\d)d", lambda m: f"{first:0{int(m.group(1) or len(m.group(0)))}d}",
                        opt("-o"))
        folder, name = os.path.split(output)
        os.makedirs(folder, exist_ok=True)
        tempfile.mkstemp(prefix=f".{os.path.splitext(name)[0]}.", suffix=".tmp.exr", dir=folder)
        event(event="frame_start", frame=first)
        for i in range(1, 100000):
            event(event="progress", frame=first, done=i, total=100000, stage="patches")
            time.sleep(0.05)
        return 0
    if mode == "slow":
        for f in range(first, last + 1):
            event(event="frame_start", frame=f)
            for i in range(1, 4):
                time.sleep(float(os.environ.get("STANDIN_STEP_S", "0.05")))
                event(event="progress", frame=f, done=i, total=3, stage="patches")
            event(event="frame_done", frame=f, output="x", cached=False)
            if f == first:
                time.sleep(float(os.environ.get("STANDIN_PAUSE_S", "0")))
        return 0
    if mode == "hang":
        def stop(signum, frame):
            with open(os.environ["STANDIN_MARK"], "w") as f:
                f.write("SIGINT")
            sys.exit(130)
        signal.signal(signal.SIGINT, stop)
        event(event="frame_start", frame=first)
        for i in range(1, 1000):
            event(event="progress", frame=first, done=i, total=1000, stage="patches")
            time.sleep(0.05)
        return 0
    event(event="frame_start", frame=first)
    event(event="frame_done", frame=first, output="x", cached=False)
    for f in range(first + 1, last + 1):
        event(event="frame_failed", frame=f, error=f"plate.{f:04d}.exr: truncated file")
    return 1


if __name__ == "__main__":
    sys.exit(main())
