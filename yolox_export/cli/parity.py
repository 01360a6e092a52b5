"""Parity of the static YOLOX assignment + loss (the eager drop-in, the padded graph under torch.compile, ONNX under
onnxruntime, TensorRT) against the eager reference losses, on the built-in seeded scenario suite or on batches you
recorded.

    yolox-export parity                                        # every mode, every scenario kind, subject static
    yolox-export parity --recorded step.pt --modes fast   # your own batch: torch.save(dict(predictions=...,
                                                               #   targets=...), "step.pt") in a training step
    yolox-export parity --subjects static onnxruntime --export --image-size 320 320 --num-classes 20
    yolox-export parity --modes fast --kinds fresh --plot plots/ --json parity.json
    yolox-export parity --subjects static compiled --kinds coco crowded   # the torch.compile'd padded graph too
    yolox-export parity --export --with-grad --kinds coco crowded     # the exported gradient graph's d loss / d predictions
    yolox-export parity --onnx g.onnx   # a graph you exported: its mode, image size, classes, strides and options
                                        # are read from its metadata

(``python scripts/parity.py`` is the same command.) Exit code: 0 when every report passes, 1 when one fails, 2 for
a usage or input error.
"""

from __future__ import annotations

import argparse
import sys

from ..config import MODES
from ..parity import run as parity_run
from ..parity import suite
from ..parity.comparison import SUBJECTS
from ..scenarios import KINDS
from .common import ProgressBars, int_at_least, one_line_errors, output_dir_problem, output_file_problem


_positive = int_at_least(1)
_count = int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolox-export parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("batches (the built-in suite unless --recorded)")
    data.add_argument("--recorded", nargs="+", metavar="FILE.pt",
                      help="recorded batches: " + suite.RECORDED_FORMAT + " (default: the built-in suite)")
    data.add_argument("--kinds", nargs="+", choices=KINDS, metavar="KIND",
                      help=f"scenario kinds of the suite, of {', '.join(KINDS)} (default: all)")
    data.add_argument("--seeds", type=_positive, metavar="N",
                      help=f"seeds per kind (default: {suite.DEFAULT_SEEDS}; 'crowded', the slow kind, is capped "
                           f"at {suite.SEED_CAPS['crowded']} unless --seeds is given)")
    data.add_argument("--batch-size", type=_positive, metavar="B",
                      help=f"images per suite batch (default: {suite.DEFAULT_BATCH_SIZE})")
    data.add_argument("--image-size", type=_positive, nargs=2, metavar=("H", "W"),
                      help="suite image size (default: the --onnx graphs', else %d %d)" % suite.DEFAULT_IMAGE_SIZE)
    data.add_argument("--num-classes", type=_positive, metavar="C",
                      help=f"classes (default: the --onnx graphs', else {suite.DEFAULT_NUM_CLASSES} for the suite; "
                           "inferred from the predictions' last dimension - 5 for --recorded)")
    data.add_argument("--strides", type=_positive, nargs="+", metavar="S",
                      help="head strides, one per level (default: the --onnx graphs', else %s)"
                           % " ".join(map(str, suite.DEFAULT_STRIDES)))
    what = parser.add_argument_group("what to compare")
    what.add_argument("--modes", nargs="+", choices=MODES, metavar="MODE",
                      help=f"assignment modes, of {', '.join(MODES)} (default: {' '.join(suite.DEFAULT_MODES)}, the "
                           "modes of (cx, cy, w, h) targets, or the --onnx graphs' modes; mmdet takes (x1, y1, x2, "
                           "y2) targets: name it, alone for recorded files)")
    what.add_argument("--subjects", nargs="+", choices=SUBJECTS, default=["static"], metavar="SUBJECT",
                      help=f"implementations compared with the eager reference, of {', '.join(SUBJECTS)} "
                           "(default: static)")
    what.add_argument("--onnx", nargs="+", metavar="PATH",
                      help="exported graph(s) for subject onnxruntime, one per mode, matched by their metadata, "
                           "which also gives the run's modes, image size, classes, strides and loss options unless "
                           "given (a flag that disagrees with it is an error); a graph exported --with-grad has its "
                           "predictions_grad compared as its gradients; a chunked graph (G fixed) is compared on "
                           "the batches that fit its G (implies --subjects onnxruntime; default: none)")
    what.add_argument("--export", action="store_true",
                      help="export a matching graph per mode into a temporary folder (implies --subjects onnxruntime)")
    what.add_argument("--with-grad", action="store_true",
                      help="with --export: export the graphs with their predictions_grad output, compared with the "
                           "reference's autograd as onnxruntime's gradients row (default: forward-only graphs)")
    what.add_argument("--engine", nargs="+", metavar="PATH",
                      help="TensorRT engine(s) for subject tensorrt, one per mode in the order of --modes "
                           "(implies --subjects tensorrt; default: none)")
    what.add_argument("--no-gradients", action="store_true",
                      help="do not compare gradients (faster; default: gradients are compared)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="PATH",
                     help="write {passed, batches, reports: {mode: report}} as JSON (default: none)")
    out.add_argument("--plot", metavar="DIR", help="write a PNG per image with differing cells (default: none)")
    out.add_argument("--plot-limit", type=_count, default=suite.DEFAULT_PLOT_LIMIT, metavar="N",
                     help="at most N plots per mode (default: %(default)s)")
    return one_line_errors(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.recorded:
        given = [flag for flag, value in (("--kinds", args.kinds), ("--seeds", args.seeds),
                                          ("--batch-size", args.batch_size), ("--image-size", args.image_size))
                 if value is not None]
        if given:
            print(f"error: {', '.join(given)} shape(s) the built-in suite and cannot be used with --recorded",
                  file=sys.stderr)
            return 2
    subjects = set(args.subjects) | ({"onnxruntime"} if args.onnx or args.export else set()) | (
        {"tensorrt"} if args.engine else set())
    if args.onnx and args.export:
        print("error: give either --onnx or --export, not both", file=sys.stderr)
        return 2
    if args.with_grad and not args.export:
        print("error: --with-grad is an option of --export (a file given with --onnx has the gradient output or "
              "not as it was exported)", file=sys.stderr)
        return 2
    if "onnxruntime" in subjects and not (args.onnx or args.export):
        print("error: subject onnxruntime needs --onnx PATH (one per mode) or --export", file=sys.stderr)
        return 2
    if "tensorrt" in subjects and not args.engine:
        print("error: subject tensorrt needs --engine PATH (one per mode, in the order of --modes)", file=sys.stderr)
        return 2
    modes = args.modes or ([] if args.onnx else list(suite.DEFAULT_MODES))
    if args.engine and len(args.engine) != len(modes):
        print(f"error: --engine got {len(args.engine)} file(s) for {len(modes)} mode(s) {modes}; "
              "give one engine per mode, in the order of --modes", file=sys.stderr)
        return 2
    problem = (output_file_problem(args.json, "--json", "json") if args.json else None) or (
        output_dir_problem(args.plot, "--plot", parity_run.PLOT_OUTPUTS) if args.plot else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    seeds_given = args.seeds is not None
    options = parity_run.Options(
        modes=args.modes, subjects=args.subjects, kinds=args.kinds or KINDS,
        seeds=args.seeds if seeds_given else suite.DEFAULT_SEEDS,
        batch_size=args.batch_size or suite.DEFAULT_BATCH_SIZE,
        image_size=tuple(args.image_size) if args.image_size else None,
        num_classes=args.num_classes, strides=tuple(args.strides) if args.strides else None,
        recorded=args.recorded, onnx=args.onnx, export=args.export, export_grad=args.with_grad, engine=args.engine,
        json_path=args.json,
        plot_dir=args.plot, plot_limit=args.plot_limit, gradients=not args.no_gradients,
        seed_caps=not seeds_given,
    )
    try:
        bars = ProgressBars("batch")
        try:
            result = parity_run.run(options, log=print, progress=bars)
        finally:
            bars.close()
    except suite.MissingArtifactError as error:
        flag = "--onnx" if error.subject == "onnxruntime" else "--engine"
        print(f"error: subject {error.subject}: no {flag} file for mode(s) {error.modes} (pass one per mode"
              f"{', or --export' if flag == '--onnx' else ''})", file=sys.stderr)
        return 2
    except suite.InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if result.passed else 1

