"""Open Job Description job templates for ``hdmatt matte`` (what AWS Deadline Cloud runs).

The template (``jobtemplate-2023-09`` with the ``TASK_CHUNKING`` extension) has one step whose
``Frame`` task parameter is ``CHUNK[INT]`` over the shot's frames, ``ChunkSize`` frames a
task, not necessarily contiguous (a stepped shot still fills its chunks); each task runs::

    <HdmattExecutable> matte <Plate> <Trimap> -o <Output> --frames={{Task.Param.Frame}} ...

``{{Task.Param.Frame}}`` expands to a range expression such as ``1001-1010`` or
``1001-1019:2``, which ``--frames`` reads. ``--job-output job.json`` writes the template as
JSON, any other name YAML.
The engine is loaded once per chunk, and frames a previous (failed or re-queued) task already
finished come from the shared per-frame cache if ``--cache`` points at shared storage.

Plate, trimap, output and the executable are STRING job parameters holding absolute paths:
OpenJD only allows PATH parameters to default to paths relative to the template's folder,
and a template printed to stdout cannot know where it will be saved. So the workers must see
the shot at the same paths (shared storage); override any of them at submission with
``-p Plate=...`` (``openjd run``) or ``--parameter Plate=...`` (``deadline bundle submit``).

Submission (Deadline Cloud; the ``deadline`` CLI from PyPI ``deadline``)::

    mkdir -p bundle && hdmatt farm openjd ... > bundle/template.yaml
    deadline bundle submit bundle --farm-id farm-... --queue-id queue-...

Local check and run: ``openjd check job.yaml`` and ``openjd run job.yaml``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import unicodedata

from ..errors import OutputError, UsageError

__all__ = ["job_template", "render_yaml", "default_executable", "write_template", "range_expression",
           "gpus_for", "gpu_host", "on_run", "checked_parameter", "checked_timeout",
           "TIMEOUT_HELP"]

SPEC_VERSION = "jobtemplate-2023-09"
STEP_NAME = "Matte"


def worker_executable(name: str) -> str:
    """A path made absolute (a task runs in its own folder); a bare name (``hdmatt``) stays
    one, for the worker's PATH to find."""
    return name if os.sep not in name and "/" not in name else os.path.abspath(name)


def default_executable() -> str:
    """Absolute path of the ``hdmatt`` being run (or the one beside this Python)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) in ("hdmatt", "hdmatt.exe") and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    beside = os.path.join(os.path.dirname(sys.executable), "hdmatt")
    if os.path.isfile(beside):
        return os.path.abspath(beside)
    found = shutil.which("hdmatt")
    if found:
        return os.path.abspath(found)
    raise UsageError("cannot find the hdmatt executable; pass --hdmatt PATH")


MAX_PARAMETER_CHARS = 1024  # OpenJD: the longest value a STRING job parameter may hold
MAX_NAME_CHARS = 128  # OpenJD: the longest job name (without FEATURE_BUNDLE_1)
#: seconds between a cancelled task's SIGTERM and its kill: hdmatt stops within a second or
#: two of SIGTERM (exit 143) and removes its temp files; a kill (OpenJD's default) leaves
#: the frame being written as a temp file in the shared output folder
STOP_NOTICE_S = 30


TIMEOUT_HELP = ("seconds a task may run before the farm cancels it (SIGTERM, then the kill "
                "30 s later): a task hung on a GPU or a file server frees its worker; "
                "default: no limit")


def gpus_for(device: str | None) -> int:
    """GPUs a worker needs for ``--device``: ``cuda:N`` needs N + 1 (the index counts from
    0), ``cuda`` one, anything else none."""
    device = str(device or "")
    if not device.startswith("cuda"):
        return 0
    index = device.partition(":")[2]
    return int(index) + 1 if index.isdigit() else 1


def gpu_host(gpus: int) -> dict:
    """A step's host requirement of at least ``gpus`` GPUs (OpenJD's GPU count)."""
    return {"amounts": [{"name": "amount.worker.gpu", "min": int(gpus)}]}


def on_run(command: str, args: list[str], timeout: int | None = None) -> dict:
    """A step's script: ``command args`` as its onRun action, cancelled with a SIGTERM first
    (:data:`STOP_NOTICE_S`), and so when it runs past ``timeout`` seconds (None: never)."""
    action: dict[str, object] = {
        "command": command, "args": args,
        "cancelation": {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": STOP_NOTICE_S},
    }
    if timeout is not None:
        action["timeout"] = checked_timeout(timeout)
    return {"actions": {"onRun": action}}


def checked_timeout(timeout: int) -> int:
    """``--timeout``: whole seconds, at least one."""
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise UsageError(f"--timeout must be a whole number of seconds, at least 1, got {timeout!r}")
    return timeout


def checked_parameter(name: str, value: str) -> str:
    """A STRING job parameter's value within OpenJD's 1024 characters (a longer path would
    be refused at submission)."""
    if len(value) > MAX_PARAMETER_CHARS:
        raise UsageError(f"{name}: {value[:40]}... is {len(value)} characters, over Open Job "
                         f"Description's {MAX_PARAMETER_CHARS} for a job parameter")
    return value


def range_expression(frames: list[int]) -> str:
    """OpenJD range expression for ``frames``: each run of one step as ``a-b`` (step 1) or
    ``a-b:s``, the rest as single frames (``1001-1100:2,1205,1300-1310``); the engine's
    ``--frames`` and Nuke's prepass read the same syntax.

    Raises
    ------
    UsageError
        No frames, or frames too irregular to fit OpenJD's 1024-character parameter.
    """
    if not frames:
        raise UsageError("--frames: no frames")
    ordered = sorted(set(frames))
    parts, i = [], 0
    while i < len(ordered):
        j = i + 1
        if j < len(ordered):
            step = ordered[j] - ordered[i]
            while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == step:
                j += 1
            if j - i >= 2 or step == 1:
                a, b = ordered[i], ordered[j]
                parts.append(f"{a}-{b}" if step == 1 else f"{a}-{b}:{step}")
                i = j + 1
                continue
        parts.append(str(ordered[i]))
        i += 1
    text = ",".join(parts)
    if len(text) > MAX_PARAMETER_CHARS:
        raise UsageError(f"--frames: {len(ordered)} frames without a regular step make a range "
                         f"of {len(text)} characters, over OpenJD's {MAX_PARAMETER_CHARS}; "
                         "submit the shot as several jobs")
    return text


def job_template(*, plate: str, trimap: str | None, output: str, frames: list[int],
                 chunk: int = 10, extra_args: list[str] | None = None,
                 executable: str | None = None, name: str | None = None,
                 gpus: int = 0, timeout: int | None = None) -> dict:
    """Build the job template as a dict (serialise with :func:`render_yaml`).

    Parameters
    ----------
    plate, trimap, output : str
        Sequence patterns (``plate.####.exr``); made absolute here. ``trimap`` may be None
        when ``extra_args`` holds ``--trimap-from-matte``.
    frames : list of int
        Frames of the shot; become the default of the ``Frames`` job parameter.
    chunk : int
        Frames per task (the chunk size; >= 1).
    extra_args : list of str
        Further ``hdmatt matte`` options, passed to every task unchanged.
    executable : str, optional
        hdmatt on the workers; default :func:`default_executable`.
    name : str, optional
        Job name; default ``hdmatt <plate file name>``.
    gpus : int
        GPUs a task's worker needs (a host requirement; 0: none, :func:`gpus_for`).
    timeout : int, optional
        Seconds a task may run before it is cancelled (None: no limit).
    """
    if chunk < 1:
        raise UsageError(f"--chunk must be at least 1, got {chunk}")
    exe = worker_executable(executable) if executable else default_executable()
    params: list[dict[str, object]] = [
        {"name": "HdmattExecutable", "type": "STRING", "default": checked_parameter("--hdmatt", exe),
         "description": "hdmatt command on the worker (from the engine venv)"},
        {"name": "Plate", "type": "STRING",
         "default": checked_parameter("PLATE", os.path.abspath(plate)),
         "description": "plate sequence, e.g. /shots/a/plate.####.exr"},
    ]
    args = ["matte", "{{Param.Plate}}"]
    if trimap:
        params.append({"name": "Trimap", "type": "STRING",
                       "default": checked_parameter("TRIMAP", os.path.abspath(trimap)),
                       "description": "trimap sequence or single trimap file"})
        args.append("{{Param.Trimap}}")
    params += [
        {"name": "Output", "type": "STRING",
         "default": checked_parameter("-o", os.path.abspath(output)),
         "description": "alpha output sequence"},
        {"name": "Frames", "type": "STRING", "default": range_expression(frames),
         "description": "frames to matte (OpenJD range expression)"},
        {"name": "ChunkSize", "type": "INT", "default": int(chunk), "minValue": 1,
         "description": "frames per task"},
    ]
    # one word: a chunk of negative frames ("-10--1") would read as an option
    args += ["-o", "{{Param.Output}}", "--frames={{Task.Param.Frame}}"]
    args += [_literal(word, prev) for prev, word in zip(["", *(extra_args or [])],
                                                         extra_args or [])]
    job_name = checked_name(name, f"hdmatt {os.path.basename(plate)}")
    return {
        "specificationVersion": SPEC_VERSION,
        "extensions": ["TASK_CHUNKING"],
        "name": job_name,
        "parameterDefinitions": params,
        "steps": [{
            "name": STEP_NAME,
            "parameterSpace": {
                "taskParameterDefinitions": [{
                    "name": "Frame",
                    "type": "CHUNK[INT]",
                    "range": "{{Param.Frames}}",
                    # any frames in a chunk: --frames reads a-b:s and lists, so a stepped
                    # shot still runs ChunkSize frames a task (one engine load each)
                    "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}",
                               "rangeConstraint": "NONCONTIGUOUS"},
                }],
            },
            "script": on_run("{{Param.HdmattExecutable}}", args, timeout),
            **({"hostRequirements": gpu_host(gpus)} if gpus else {}),
        }],
    }


def _literal(word: str, option: str, what: str | None = None) -> str:
    """A word the template interpolates (task arguments, the job's name), checked: Open Job
    Description reads ``{{...}}`` there as an expression, so the job would be refused at
    submission, or the word replaced by a parameter's value. ``what`` names the word in
    the message (default: ``option``, or "a task argument")."""
    if "{{" in word or "}}" in word:
        what = what or (option if option.startswith("-") else "a task argument")
        raise UsageError(f"{what}: {word!r} holds '{{{{' or '}}}}', which Open Job Description "
                         "reads as a template expression; rename it")
    return word


def checked_name(name: str | None, default: str) -> str:
    """The job's name: ``--name``, else ``default`` (made from a file name, cut to OpenJD's
    128 characters), either checked by :func:`_literal` (control characters: by
    :func:`template_text`, as in every string of the job)."""
    if name is not None:
        if not name.strip():
            raise UsageError("--name is empty")
        if len(name) > MAX_NAME_CHARS:
            raise UsageError(f"--name: {len(name)} characters, over Open Job Description's "
                             f"{MAX_NAME_CHARS} for a job name")
        chosen, what = name, "--name"
    else:
        chosen, what = _cut(default, MAX_NAME_CHARS), \
            "the job's name made from a file name (give --name)"
    return _literal(chosen, "--name", None if name is not None else what)


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, never ending in a space or inside a character
    built of several (a letter and its accent, an emoji sequence)."""
    if len(text) <= limit:
        return text
    end = limit
    while end > 1 and (unicodedata.combining(text[end]) or text[end] in "\u200d\ufe0f"
                       or text[end - 1] == "\u200d"):
        end -= 1
    return text[:end].rstrip()


def render_yaml(value, indent: int = 0) -> str:
    """Serialise dicts/lists/str/int to block YAML.

    Strings are written as JSON strings, which are valid YAML double-quoted scalars, so no
    value (``{{...}}``, ``#``, ``:``) can change meaning; no YAML library is needed at runtime.
    """
    return "\n".join(_yaml_lines(value, indent)) + "\n"


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    # ASCII, escaped as YAML reads it: JSON's surrogate pairs (an emoji in a path) are not
    # YAML, whose escape for a character beyond 0xFFFF is \UXXXXXXXX
    return "".join(c if " " <= c <= "~" else _escaped(c)
                   for c in json.dumps(str(value), ensure_ascii=False))


def _escaped(c: str) -> str:
    code = ord(c)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _yaml_lines(value, indent: int):
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                yield f"{pad}{key}:"
                yield from _yaml_lines(item, indent + 2)
            else:
                yield f"{pad}{key}: {_scalar(item) if not isinstance(item, (dict, list)) else '[]'}"
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                lines = list(_yaml_lines(item, indent + 2))
                yield f"{pad}- {lines[0].lstrip()}"
                yield from lines[1:]
            else:
                yield f"{pad}- {_scalar(item)}"
    else:
        yield f"{pad}{_scalar(value)}"


def template_text(template: dict, path: str | None) -> str:
    """The template as the file ``path`` names it: JSON for a ``.json`` name (Open Job
    Description reads both), else YAML (stdout too)."""
    _check_strings(template)
    if path and path.lower().endswith(".json"):
        return json.dumps(template, indent=2) + "\n"
    return render_yaml(template)


def _check_strings(value) -> None:
    """Every string of the template one OpenJD takes: no control character (refused in a
    name, an argument, a parameter) and valid UTF-8 (a file name's undecodable byte)."""
    if isinstance(value, dict):
        for item in value.values():
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)
    elif isinstance(value, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise UsageError(f"{value!r}: not valid UTF-8 (a file name's byte?); rename it")
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise UsageError(f"{value!r} holds a control character, which Open Job "
                             "Description refuses in a job; rename it")


def write_template(path: str, text: str) -> None:
    """Write a job template atomically; a folder that cannot be written is an OutputError."""
    from .. import atomic
    try:
        atomic.write_text_atomic(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror}", path=path) from None


