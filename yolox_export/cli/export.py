"""Export the static YOLOX assignment + loss graph to ONNX, validate it, and optionally build a TensorRT engine.

    yolox-export export                            # shipped preset yolox_s -> models/yolox_s.onnx
    yolox-export export --preset yolox_nano --mode fast --engine yolox_nano_fast.engine
    yolox-export export --preset my_model.toml --num-classes 20 --output my_model.onnx
    yolox-export export --mode fast --with-grad     # a training graph: also d loss / d predictions

(``python scripts/export.py`` is the same command.) Without --output the graph is written to ./models/ of the
current directory, named after the preset and its overrides (plus ``_targets`` with --with-targets, ``_grad`` with
the gradient).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import MODES
from ..export.estimate import MAX_UNROLLED_CHUNKS, chunked_export_estimate
from ..export.presets import DEFAULT_PRESET, load_preset, parse_range, shipped_presets, with_overrides
from ..files import OutputPathError
from .common import ProgressBars, int_at_least, one_line_errors, output_file_problem


def _range(text: str) -> tuple[int, int, int]:
    try:
        return parse_range(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolox-export export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=DEFAULT_PRESET, metavar="NAME|FILE",
                        help=f"a shipped preset ({', '.join(shipped_presets())}) or a preset TOML file "
                             "(default: %(default)s)")
    parser.add_argument("--output", help="ONNX file to write (default: ./models/<preset name + overrides>.onnx)")
    parser.add_argument("--mode", choices=MODES, help=f"assignment mode, one of {', '.join(MODES)} "
                                                      "(default: the preset's)")
    parser.add_argument("--num-classes", type=int, help="number of classes (default: the preset's)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: the preset's)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the preset's)")
    parser.add_argument("--batch", type=_range, metavar="MIN:OPT:MAX",
                        help="dynamic batch range / TensorRT profile (default: the preset's)")
    parser.add_argument("--max-gt", type=_range, metavar="MIN:OPT:MAX",
                        help="dynamic max_gt range / TensorRT profile (default: the preset's)")
    parser.add_argument("--engine", help="also build a TensorRT engine at this path (default: none)")
    parser.add_argument("--with-targets", action="store_true", help="add cls/obj/reg/l1 targets to the outputs")
    parser.add_argument("--with-grad", action="store_true",
                        help="add the output predictions_grad [B, A, 5 + C], d loss / d predictions computed in the "
                             "graph (default: the preset's with_grad, false in the shipped presets)")
    parser.add_argument("--no-timing", action="store_true", help="skip the onnxruntime latency measurement")
    parser.add_argument("--targets-per-chunk", type=int_at_least(1), metavar="N",
                        help="assign N targets at a time, the chunks unrolled in the graph; needs a fixed max_gt "
                             "(--max-gt G:G:G), which the graph then keeps (default: every target at once, G dynamic); "
                             "the chunk count and the export's estimated time and size are printed first")
    parser.add_argument("--allow-large-export", action="store_true",
                        help=f"export a chunked graph of more than {MAX_UNROLLED_CHUNKS} unrolled chunks (refused "
                             "otherwise: its export time grows faster than the chunk count)")
    return one_line_errors(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        preset = with_overrides(load_preset(args.preset), mode=args.mode, num_classes=args.num_classes,
                                opset=args.opset, batch=args.batch, max_gt=args.max_gt,
                                with_grad=True if args.with_grad else None,
                                image_size=tuple(args.image_size) if args.image_size else None)
    except (OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from ..export.pipeline import default_output_dir, export_and_validate

    if args.targets_per_chunk is not None and preset.max_gt[0] != preset.max_gt[2]:
        print(f"error: --targets-per-chunk needs a fixed max_gt (--max-gt G:G:G), got "
              f"{':'.join(map(str, preset.max_gt))}", file=sys.stderr)
        return 2
    stem = preset.name + ("_targets" if args.with_targets else "") + ("_grad" if preset.with_grad else "") + (
        f"_chunk{args.targets_per_chunk}" if args.targets_per_chunk else "")
    output = Path(args.output) if args.output else default_output_dir() / f"{stem}.onnx"
    problem = output_file_problem(output, "--output", "onnx") or (
        output_file_problem(args.engine, "--engine", "engine") if args.engine else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.engine:
        from ..export.tensorrt import tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason:
            print(f"error: cannot build a TensorRT engine: {reason}", file=sys.stderr)
            return 2
    if args.targets_per_chunk is not None:
        estimate = chunked_export_estimate(preset, args.targets_per_chunk)
        if estimate.over_limit and not args.allow_large_export:
            print(f"error: --targets-per-chunk {args.targets_per_chunk}: {estimate}; over the limit of "
                  f"{MAX_UNROLLED_CHUNKS} chunks: give a larger --targets-per-chunk, or --allow-large-export to "
                  "export it anyway", file=sys.stderr)
            return 2
        print(f"chunked export: {estimate}", flush=True)
    bars = ProgressBars("stage")
    try:
        report = export_and_validate(preset, output, with_targets=args.with_targets, engine=args.engine,
                                     time_it=not args.no_timing, targets_per_chunk=args.targets_per_chunk,
                                     progress=bars, allow_large_export=args.allow_large_export)
    except OutputPathError as error:  # the path changed since it was checked
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        bars.close()
    print(report)
    return 0 if report.validation.ok else 1

