"""Stand-in ``nuke`` executable for the farm tests: Nuke's command line over the test double.

    nuke -t SCRIPT.py ARGS...          run a Python file in terminal mode (sys.argv = [SCRIPT.py, ARGS])
    nuke -F A-B -X WRITE -x SCRIPT.nk  load the script and execute WRITE over frames A-B

Gizmos come from ``$NUKE_PATH`` (each folder's init.py runs first, as in Nuke). The test
writes a launcher named ``nuke`` that runs this file with the project's Python.
"""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nuke


def main(argv):
    for folder in nuke.pluginPath():
        init = os.path.join(folder, "init.py")
        if os.path.isfile(init):
            runpy.run_path(init)
    if argv[:1] == ["-t"]:
        sys.argv = argv[1:]
        try:
            runpy.run_path(argv[1], run_name="__main__")
        except SystemExit as exc:
            return exc.code or 0
        return 0
    frames = argv[argv.index("-F") + 1]
    write = argv[argv.index("-X") + 1]
    script = argv[argv.index("-x") + 1]
    first, _, last = frames.partition("-")
    nuke.scriptOpen(script)
    try:
        nuke.execute(write, int(first), int(last or first))
    except RuntimeError as exc:  # Nuke: the error on stderr, exit code 1
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"nuke: rendered {write} {frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
