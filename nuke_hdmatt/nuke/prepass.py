"""Farm step 1, run by Nuke: export an HDMatt node's inputs for the engine.

    nuke -t /path/to/nuke_hdmatt/nuke/prepass.py SCRIPT --node HDMatt1 --frames 1001-1100 --work DIR

Writes ``DIR/plate.####.exr`` and ``DIR/trimap.####.exr`` (or ``matte.####.exr``) as the
pixels arrive at the node (the working space), and ``DIR/matte_job.json``: the engine call
(:class:`~nuke_hdmatt.nuke.engine_call.EngineCall` fields) that farm step 2 runs per chunk
without Nuke. A config bundled with Nuke is copied to ``DIR/ocio/`` so that the engine
workers need no Nuke install. Runs once per frame chunk (chunks may run at the same time:
every chunk writes the same job file, atomically; step 2 passes its own frames). ``--node``
may name a node inside a Group (``Group1.HDMatt1``). Exit 0 on success, 2 with one line on
stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    # run as a file by `nuke -t`: gizmos/init.py normally made the package importable; if
    # not, the checkout this file lives in
    try:
        import nuke_hdmatt  # noqa: F401  (only probes that the package is importable)
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
    import nuke

    from nuke_hdmatt.atomic import write_text_atomic
    from nuke_hdmatt.errors import HDMattError, run_reporting
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    from nuke_hdmatt.nuke import node as hdmatt_node
    from nuke_hdmatt.nuke.colour_settings import copy_bundled_config
    from nuke_hdmatt.nuke.engine_call import JOB_FILE
    from nuke_hdmatt.nuke.export import views

    ap = argparse.ArgumentParser(prog="prepass.py")
    ap.add_argument("script")
    ap.add_argument("--node", required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args(argv)

    def body() -> int:
        try:
            return export(args)
        except RuntimeError as exc:  # what Nuke raises for a failing render or script
            raise HDMattError(str(exc), path=args.node) from None

    def export(args) -> int:
        if not os.path.isfile(args.script):
            raise HDMattError("Nuke script not found", path=args.script)
        nuke.scriptOpen(args.script)
        node = nuke.toNode(args.node)
        if node is None or node.knob("alpha_file") is None:
            raise HDMattError(f"no HDMatt node named {args.node!r}", path=args.script)
        frames = hdmatt_node.requested_frames(node, args.frames)
        hdmatt_node.check_alpha_path(node)
        colour = hdmatt_knobs.plate_colour(node)  # before rendering: bad settings fail at once
        os.makedirs(args.work, exist_ok=True)
        colour = copy_bundled_config(colour, args.work)
        paths = hdmatt_node.export_inputs(node, frames, args.work, plate_space=colour.colorspace)
        job = hdmatt_knobs.matte_job(node, paths, frames, colour)
        out = os.path.join(args.work, JOB_FILE)
        write_text_atomic(out, json.dumps({"script": os.path.abspath(args.script),
                                           "node": args.node, "job": job.to_dict(),
                                           "views": views()}, indent=2))
        print(f"hdmatt prepass: exported {len(frames)} frames of {args.node} to {args.work}")
        return 0

    return run_reporting("hdmatt", body)


if __name__ == "__main__":
    sys.exit(main())
