"""Validate a CUDA machine in one command: the CUDA tests, every mode exported and (with TensorRT) built into an
engine, engine and onnxruntime-CUDA parity against the eager references, and the CUDA benchmark at B=16.

    yolox-export gpu-check                 # writes results/gpu.json and results/gpu.md
    yolox-export gpu-check --out DIR --modes fast megvii --no-tests

(``python scripts/gpu_check.py`` is the same command.) Without a CUDA device it says so in one line, checks its own
plumbing and exits 0. Exit codes: 0 when every check passed (or there is no GPU and the plumbing is fine), 1 when
a check failed, 2 for bad options or broken plumbing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..gpu_check import GpuCheckOptions, run_gpu_check, run_modes, write_gpu_outputs
from ..config import MODES
from .common import int_at_least, one_line_errors, output_dir_problem


#: The files gpu-check writes into --out (name or glob -> kind, ``files.KINDS``).
OUTPUTS = {"gpu.json": "json", "gpu.md": "markdown", "gpu_models/*.onnx": "onnx", "gpu_models/*.engine": "engine"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolox-export gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results", metavar="DIR", help="output folder, relative to the current directory (default: %(default)s)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), metavar="MODE",
                        help=f"modes to check, of {', '.join(MODES)} (default: all)")
    parser.add_argument("--batch", type=int_at_least(1), default=16, metavar="B", help="benchmark batch size (default: %(default)s)")
    parser.add_argument("--repeats", type=int_at_least(1), default=10, metavar="N", help="timed calls per measurement (default: %(default)s)")
    parser.add_argument("--no-tests", action="store_false", dest="run_tests", help="skip the CUDA tests")
    return one_line_errors(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        modes = run_modes(args.modes)
    except ValueError as error:
        print(f"error: {str(error).replace('modes:', '--modes:')}", file=sys.stderr)
        return 2
    problem = output_dir_problem(args.out, "--out", OUTPUTS)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    options = GpuCheckOptions(out=Path(args.out), modes=modes, batch=args.batch, repeats=args.repeats,
                              run_tests=args.run_tests)
    doc = run_gpu_check(options, log=print)
    if doc["plumbing_problems"]:
        print("error: gpu-check cannot run: " + "; ".join(doc["plumbing_problems"]), file=sys.stderr)
        return 2
    if not doc["ran"]:
        print(f"gpu-check: nothing to check here: {doc['reason']}; plumbing ok")
        return 0
    paths = write_gpu_outputs(doc, options.out)
    print(f"gpu-check: {'PASS' if doc['passed'] else 'FAIL'} in {doc['seconds']} s; wrote "
          + ", ".join(str(p) for p in paths))
    return 0 if doc["passed"] else 1
