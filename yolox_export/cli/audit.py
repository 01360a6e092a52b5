"""Audit which targets SimOTA leaves without cells (starved), in recorded batches, with the static module.

    yolox-export audit --recorded step.pt                  # one batch: its targets sorted by starvation
    yolox-export audit --recorded batches/ --mode megvii   # a folder of batches: totals per class and size bucket
    yolox-export audit --recorded step.pt --max-images 8   # and pictures of up to 8 of the worst images

The recorded format is parity's (``yolox-export parity --help``): torch.save(dict(predictions=..., targets=...)); a
file may also hold ``mode`` and ``strides`` entries, used when the flags are not given. Writes ./results/ (or
--out): audit.txt and audit.json for one batch, audit_totals.txt and audit_totals.json for a folder, and
audit_<file>_image<i>.png pictures (boxes and kept cells, starved targets red and dashed). Definitions:
docs/audit.md. Exit code: 0 on success, 2 for a usage or input error.
"""

from __future__ import annotations

import argparse
import sys

from ..config import MODES
from ..parity.suite import DEFAULT_STRIDES, InputError, RECORDED_FORMAT
from .common import ProgressBars, int_at_least, one_line_errors, output_dir_problem

_positive = int_at_least(1)
_count = int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    from ..audit.run import DEFAULT_MAX_IMAGES

    parser = argparse.ArgumentParser(prog="yolox-export audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recorded", required=True, metavar="FILE_OR_FOLDER",
                        help="a recorded batch, or a folder of them (*.pt): " + RECORDED_FORMAT
                             + " (required; no default)")
    parser.add_argument("--mode", choices=MODES, metavar="MODE",
                        help=f"assignment mode, of {', '.join(MODES)} (default: the file's 'mode', else regular; "
                             "mmdet takes (x1, y1, x2, y2) targets)")
    parser.add_argument("--strides", type=_positive, nargs="+", metavar="S",
                        help="head strides, one per level (default: the file's 'strides', else %s)"
                             % " ".join(map(str, DEFAULT_STRIDES)))
    parser.add_argument("--num-classes", type=_positive, metavar="C",
                        help="classes (default: inferred from the predictions' last dimension - 5)")
    parser.add_argument("--max-gt", type=_positive, metavar="G",
                        help="pad to G targets per image as a fixed max_gt would; more are reported as 'over "
                             "capacity' (default: none)")
    parser.add_argument("--max-images", type=_count, default=DEFAULT_MAX_IMAGES, metavar="N",
                        help="pictures of at most N of the images with the most starved targets (default: "
                             "%(default)s; 0: none)")
    parser.add_argument("--rows", type=_count, default=40, metavar="N",
                        help="rows of the one-batch table printed (default: %(default)s; the file has all)")
    parser.add_argument("--out", default="results", metavar="DIR", help="output folder (default: %(default)s)")
    return one_line_errors(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = output_dir_problem(args.out, "--out")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from ..audit.run import AuditOptions, run_audit

    options = AuditOptions(recorded=args.recorded, mode=args.mode, strides=args.strides,
                           num_classes=args.num_classes, max_gt=args.max_gt, max_images=args.max_images,
                           output=args.out, table_rows=args.rows)
    bars = ProgressBars("batch")
    try:
        run_audit(options, log=print, progress=bars)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(f"error: pictures need matplotlib ({error}); pip install matplotlib, or --max-images 0",
              file=sys.stderr)
        return 2
    finally:
        bars.close()
    return 0
