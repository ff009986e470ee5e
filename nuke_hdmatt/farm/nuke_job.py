"""Farm jobs for Nuke scripts with HDMatt nodes: ``hdmatt farm nuke``.

    hdmatt farm nuke SCRIPT --node HDMatt1 --write Write1 --frames 1001-1100 [--chunk 10]
                     [--gpu] [--work DIR] [--nuke nuke] > job.yaml

emits an Open Job Description job (``jobtemplate-2023-09``, see :mod:`.openjd`) of four steps,
each depending on the one before:

1. ``ExportInputs`` (frame chunks like step 2, needs a Nuke licence)::

       nuke -t <nuke_hdmatt>/nuke/prepass.py SCRIPT --node HDMatt1 \
              --frames {{Task.Param.Frame}} --work DIR

   renders the node's plate and trimap (as they arrive, working space) to ``DIR`` and writes
   ``DIR/matte_job.json``: the exact ``hdmatt matte`` call, with the script's colour settings
   and the node's knobs (see :mod:`nuke_hdmatt.nuke.prepass`).
2. ``Matte`` (frame chunks, no Nuke; ``--gpu`` asks for GPU workers)::

       hdmatt farm nuke --run-chunk DIR --frames {{Task.Param.Frame}}

   runs that ``hdmatt matte`` call on the chunk, writing the node's alpha sequence (its
   ``alpha_file`` knob) through the shared per-frame cache (its ``cache`` knob).
3. ``Render`` (frame chunks, Nuke)::

       nuke -F {{Task.Param.Frame}} -X Write1 -x SCRIPT

   The HDMatt node only reads the alpha the previous step wrote; nothing is generated during
   the render (the node has no render callbacks), so ``nuke -x`` never calls ``nuke.execute``
   from a render callback.
4. ``Cleanup`` (one task, no Nuke)::

       hdmatt farm nuke --clean-work DIR

   removes the submission's exported inputs once every frame is rendered.

``--node`` is the node's full name: ``Group1.HDMatt1`` for one inside a Group. ``DIR`` is a
folder of the submission's own (``<time>-<random>``) in ``--work`` (default ``<script
folder>/hdmatt_farm/<script>_<node>``), so two submissions never share inputs; it, the
script and the node's alpha sequence must be on storage every worker sees at the same
path; an alpha sequence in a temp folder (``/tmp``, ``$TMPDIR``) is refused.
Submit as with :mod:`.openjd`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import time

from ..engine.settings import check_device
from ..errors import EXIT_OK, ArgumentParser, UsageError, run_reporting
from ..nuke.engine_call import JOB_FILE, EngineCall
from ..sequence import parse_frames
from ..shot.workflow import MAX_THREADS, check_threads
from .openjd import (
    SPEC_VERSION,
    TIMEOUT_HELP,
    checked_name,
    checked_parameter,
    checked_timeout,
    default_executable,
    gpu_host,
    gpus_for,
    on_run,
    range_expression,
    template_text,
    worker_executable,
    write_template,
)

__all__ = ["job_template", "run_chunk", "shot_job", "main", "PREPASS"]

PREPASS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nuke",
                       "prepass.py")


def _temp_roots() -> list[str]:
    roots = {tempfile.gettempdir(), "/tmp", "/var/tmp", "/private/tmp"}
    roots |= {os.environ[v] for v in ("TMPDIR", "TEMP", "TMP") if os.environ.get(v)}
    return [os.path.realpath(r) for r in roots]


def _is_temp(path: str, script: str) -> bool:
    """Under a temp folder, and not beside the script (which every worker sees anyway)."""
    real = os.path.realpath(path)
    if os.path.commonpath([real, os.path.realpath(os.path.dirname(script))]) == \
            os.path.realpath(os.path.dirname(script)):
        return False
    return any(os.path.commonpath([real, r]) == r for r in _temp_roots())


def hdmatt_nodes(blocks) -> dict:
    """``{full name: NodeBlock}`` of every HDMatt node, inside Groups too."""
    return {".".join([*path, b.name]): b for path, b in blocks
            if b.name and b.cls == "HDMatt"}


def check_script(script: str, node: str, write: str) -> None:
    """Fail early, before a job is queued, if the script lacks the named nodes or keeps the
    alpha where farm workers cannot see it.

    Raises
    ------
    UsageError
        Script missing or unreadable; no node of that full name (or wrong class); the
        node's alpha sequence in a temp folder.
    """
    from ..nuke.nk_script import node_blocks
    try:
        with open(script, encoding="utf-8") as f:
            blocks = node_blocks(f.read())
    except OSError as exc:
        raise UsageError(f"cannot read Nuke script ({exc.strerror})", path=script)
    except ValueError as exc:
        raise UsageError(f"not a Nuke script I can read ({exc})", path=script)
    by_name = {".".join([*path, b.name]): b for path, b in blocks if b.name}
    if node not in by_name:
        found = sorted(hdmatt_nodes(blocks))
        raise UsageError(f"--node: no node named {node!r}"
                         + (f" (HDMatt nodes: {', '.join(found)})" if found else ""),
                         path=script)
    if by_name[node].cls != "HDMatt":
        raise UsageError(f"--node: {node} is a {by_name[node].cls}, not an HDMatt node",
                         path=script)
    alpha = by_name[node].knobs.get("alpha_file", "")
    if alpha and "[" not in alpha and "$" not in alpha and _is_temp(alpha, script):
        raise UsageError(f"--node: {node}.alpha_file {alpha} is in a temp folder, which farm "
                         "workers do not share; set it to shared storage", path=script)
    if write not in by_name or by_name[write].cls != "Write":
        raise UsageError(f"--write: no Write node named {write!r}", path=script)


def job_template(*, script: str, node: str, write: str, frames: list[int], chunk: int = 10,
                 work: str | None = None, nuke: str = "nuke", executable: str | None = None,
                 gpus: int = 0, name: str | None = None,
                 matte_options: list[str] | None = None, timeout: int | None = None) -> dict:
    """The three-step job as a dict (serialise with :func:`~.openjd.render_yaml`).

    Parameters
    ----------
    script : str
        The ``.nk`` file (made absolute).
    node, write : str
        HDMatt node (its full name inside a Group) and Write node names.
    frames : list of int
        Frames to matte and render (the ``Frames`` job parameter's default).
    chunk : int
        Frames per task in each step.
    work : str, optional
        Shared folder for the exported inputs.
    nuke : str
        Nuke executable on the workers.
    executable : str, optional
        ``hdmatt`` on the workers (default: the one running).
    gpus : int
        GPUs a Matte task's worker needs (``amount.worker.gpu``; 0: none).
    matte_options : list of str, optional
        ``--threads N`` / ``--device D`` for the Matte step's ``--run-chunk``.
    timeout : int, optional
        Seconds a task of any step may run before it is cancelled (None: no limit).
    """
    if chunk < 1:
        raise UsageError(f"--chunk must be at least 1, got {chunk}")
    if not frames:
        raise UsageError("--frames: no frames")
    script = os.path.abspath(script)
    stem = os.path.splitext(os.path.basename(script))[0]
    base = os.path.abspath(work or os.path.join(os.path.dirname(script), "hdmatt_farm",
                                                f"{stem}_{node.replace('.', '_')}"))
    # a folder of this submission's own: a second submission while the first runs would
    # re-export over its inputs; the Cleanup step removes it when the Render is done
    work = os.path.join(base, time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3))
    exe = worker_executable(executable) if executable else default_executable()
    # (a task runs in a folder of its own: a relative --nuke is made absolute, as --hdmatt)
    params: list[dict[str, object]] = [
        {"name": name, "type": "STRING", "default": checked_parameter(flag, value),
         "description": description} for name, flag, value, description in (
        ("NukeExecutable", "--nuke", worker_executable(nuke), "Nuke on the workers of steps 1 and 3"),
        ("HdmattExecutable", "--hdmatt", exe, "hdmatt command on the workers of step 2 (engine venv)"),
        ("Prepass", "the prepass", PREPASS, "nuke_hdmatt/nuke/prepass.py, run by nuke -t"),
        ("Script", "SCRIPT", script, "the .nk script"),
        ("Node", "--node", node, "HDMatt node"),
        ("Write", "--write", write, "Write to render"),
        ("WorkDir", "--work", work, "shared folder for the exported plate/trimap"))]
    params += [
        {"name": "Frames", "type": "STRING", "default": range_expression(frames),
         "description": "frames (OpenJD range expression)"},
        {"name": "ChunkSize", "type": "INT", "default": int(chunk), "minValue": 1,
         "description": "frames per task"},
    ]

    def chunked(constraint="CONTIGUOUS"):
        # Nuke's -F takes a plain range; the prepass and the engine read any range expression
        return {"taskParameterDefinitions": [{
            "name": "Frame", "type": "CHUNK[INT]", "range": "{{Param.Frames}}",
            "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}", "rangeConstraint": constraint},
        }]}

    matte = {
        "name": "Matte",
        "dependencies": [{"dependsOn": "ExportInputs"}],
        "parameterSpace": chunked("NONCONTIGUOUS"),
        "script": on_run("{{Param.HdmattExecutable}}",
                         ["farm", "nuke", "--run-chunk", "{{Param.WorkDir}}",
                          "--frames={{Task.Param.Frame}}", *(matte_options or [])], timeout),
    }
    if gpus:
        matte["hostRequirements"] = gpu_host(gpus)
    return {
        "specificationVersion": SPEC_VERSION,
        "extensions": ["TASK_CHUNKING"],
        "name": checked_name(name, f"hdmatt {os.path.basename(script)} {node}"),
        "parameterDefinitions": params,
        "steps": [
            {"name": "ExportInputs",
             "parameterSpace": chunked("NONCONTIGUOUS"),
             "script": on_run("{{Param.NukeExecutable}}",
                              ["-t", "{{Param.Prepass}}", "{{Param.Script}}", "--node",
                               "{{Param.Node}}", "--frames={{Task.Param.Frame}}", "--work",
                               "{{Param.WorkDir}}"], timeout)},
            matte,
            {"name": "Render",
             "dependencies": [{"dependsOn": "Matte"}],
             "parameterSpace": chunked(),
             "script": on_run("{{Param.NukeExecutable}}",
                              ["-F", "{{Task.Param.Frame}}", "-X", "{{Param.Write}}", "-x",
                               "{{Param.Script}}"], timeout)},
            {"name": "Cleanup",
             "dependencies": [{"dependsOn": "Render"}],
             "script": on_run("{{Param.HdmattExecutable}}",
                              ["farm", "nuke", "--clean-work", "{{Param.WorkDir}}"], timeout)},
        ],
    }


def run_chunk(work: str, frames: str, threads: int | None = None,
              device: str | None = None) -> int:
    """Step 2: run the prepass's ``hdmatt matte`` call on ``frames`` (on ``device`` and
    ``threads`` when given, else the node's device and torch's threads), once per view
    where its paths hold ``%V``; returns the exit code (the worst of the views').

    Raises
    ------
    UsageError
        No (readable) ``matte_job.json`` in ``work``: step 1 did not run or failed.
    """
    from ..shot.workflow import run_matte, setup_logging
    path = os.path.join(work, JOB_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        call = EngineCall.from_dict(record["job"])
        view_names = [str(v) for v in record.get("views") or ["main"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"no usable prepass output ({exc}); did the ExportInputs step run?",
                         path=path)
    chunk = parse_frames(frames)
    if device:
        call.device = device
    setup_logging()
    worst = 0
    for _view, view_call in call.per_view(view_names):
        argv = view_call.argv("hdmatt", frames=frames) + (
            ["--threads", str(threads)] if threads else [])
        # the equivalent command, for the task log and for rerunning a chunk by hand
        print("+", " ".join(shlex.quote(a) for a in argv), flush=True)
        job, settings = shot_job(view_call, chunk, threads)
        code = run_matte(job, settings)
        if code not in (0, 1):  # usage error, Ctrl-C, SIGTERM: the other views would too
            return code
        worst = max(worst, code)
    return worst


def clean_work(work: str) -> int:
    """Step 4: remove one submission's exported inputs (its folder, which the prepass marked
    with its ``matte_job.json``); a folder without that mark is refused, never removed."""
    if not os.path.isfile(os.path.join(work, JOB_FILE)):
        raise UsageError(f"not a work folder of hdmatt farm nuke (no {JOB_FILE}); nothing "
                         "removed", path=work)
    shutil.rmtree(work)
    print(f"hdmatt farm nuke: removed the exported inputs in {work}", flush=True)
    return EXIT_OK


def shot_job(call, frames: list[int], threads: int | None = None):
    """The workflow's (MatteJob, RunSettings) for the Nuke side's engine call on ``frames``
    (what ``hdmatt matte`` would build from ``call.argv``)."""
    from ..shot.plan import MatteJob
    from ..shot.workflow import RunSettings
    job = MatteJob(plate=call.plate, trimap=None if call.matte else call.trimap,
                   output=call.output, frames=frames, layer=call.layer,
                   trimap_from_matte=call.matte or None,
                   plate_colorspace=call.plate_colorspace or None, ocio=call.ocio or None,
                   foreground=call.foreground or None, premultiplied=call.premultiplied,
                   exposure=call.exposure, alpha_only=True)
    if call.matte:  # a matte's channel is found as hdmatt matte finds it (A, Y, R)
        job.band = call.band
    else:
        job.trimap_channel = call.trimap_channel
    engine = {"device": call.device, "settings": call.settings}
    return job, RunSettings(engine=engine, cache=call.cache or None, threads=threads)


def main(argv: list[str] | None = None) -> int:
    """``hdmatt farm nuke ...`` (delegated here by the CLI); returns the exit code."""
    ap = ArgumentParser(prog="hdmatt farm nuke", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("script", nargs="?", metavar="SCRIPT", help="the Nuke script (.nk)")
    ap.add_argument("--node", help="HDMatt node's full name (Group1.HDMatt1 inside a Group)")
    ap.add_argument("--write", help="Write node to render in step 3")
    ap.add_argument("--frames", help="frames: 1001-1100 (or a chunk, with --run-chunk)")
    ap.add_argument("--chunk", type=int, default=10, help="frames per task (default 10)")
    ap.add_argument("--work", metavar="DIR", help="shared folder for exported inputs")
    ap.add_argument("--nuke", default="nuke", help="Nuke executable on the workers")
    ap.add_argument("--hdmatt", metavar="PATH", help="hdmatt executable on the workers")
    ap.add_argument("--gpu", action="store_true", help="run the Matte step on GPU workers")
    ap.add_argument("--device", help="the Matte step's device (auto, cpu, cuda[:N]; default: "
                    "the node's)")
    ap.add_argument("--threads", type=int, help="the Matte step's CPU threads, 1 to "
                    f"{MAX_THREADS} (default: one per core; tasks sharing a machine give "
                    "their share)")
    ap.add_argument("--name", help="job name")
    ap.add_argument("--timeout", type=int, metavar="SECONDS", help=TIMEOUT_HELP)
    ap.add_argument("--job-output", metavar="FILE", help="write the template here, not stdout")
    ap.add_argument("--run-chunk", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--clean-work", metavar="DIR", help=argparse.SUPPRESS)

    def body() -> int:
        args = ap.parse_args(argv)
        for dest in ("script", "node", "write", "frames", "work", "nuke", "hdmatt", "device",
                     "name", "job_output", "run_chunk", "clean_work"):
            value = getattr(args, dest)
            if isinstance(value, str) and not value.strip():
                raise UsageError(f"{'SCRIPT' if dest == 'script' else '--' + dest.replace('_', '-')}"
                                 " is empty")
        if args.clean_work:
            return clean_work(args.clean_work)
        if not args.frames:
            raise UsageError("--frames is required (e.g. 1001-1100)")
        check_threads(args.threads)
        if args.device:
            try:
                check_device(args.device)
            except ValueError as exc:
                raise UsageError(f"--device: {exc}") from None
        if args.timeout is not None:
            checked_timeout(args.timeout)
        if args.run_chunk:
            return run_chunk(args.run_chunk, args.frames, args.threads, args.device)
        if not args.script or not args.node or not args.write:
            raise UsageError("SCRIPT, --node and --write are required")
        check_script(args.script, args.node, args.write)
        if args.work and _is_temp(args.work, args.script):
            raise UsageError("--work: a temp folder, which farm workers do not share; give a "
                             "folder on shared storage", path=args.work)
        if args.job_output and os.path.exists(args.job_output) and \
                os.path.samefile(args.job_output, args.script):
            raise UsageError("--job-output: would overwrite the Nuke script", path=args.job_output)
        template = job_template(script=args.script, node=args.node, write=args.write,
                                frames=parse_frames(args.frames), chunk=args.chunk,
                                work=args.work, nuke=args.nuke, executable=args.hdmatt,
                                gpus=max(int(args.gpu), gpus_for(args.device)),
                                name=args.name, matte_options=[
                                    *(["--threads", str(args.threads)] if args.threads else []),
                                    *(["--device", args.device] if args.device else [])],
                                timeout=args.timeout)
        text = template_text(template, args.job_output)
        if args.job_output:
            write_template(args.job_output, text)
        else:
            sys.stdout.write(text)
        return EXIT_OK

    return run_reporting("hdmatt", body)
