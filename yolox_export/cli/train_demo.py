"""``train-demo``: train a small YOLOX-style detector on synthetic shapes with each eager reference loss and with its
static twin, and compare the training curves step by step.

Writes DIR/train_demo.json and DIR/train_demo.png, prints a table per mode, and shows a progress bar per mode on a
terminal.
Exit code: 0 when no assignment difference is a real mismatch, 1 when one is, 2 for a usage error.

With --from-graph it trains from the exported gradient graph instead (``demo.graph_train``): each mode's graph is
exported with its predictions_grad output (into DIR/graphs), run under onnxruntime at every step, and its
predictions_grad fed to the head's backward, beside an eager reference run; at every step the graph is also run on
the eager run's own predictions and compared with eager autograd. Writes DIR/train_graph.json and
DIR/train_graph.png. Exit code 0 when the graph's loss and gradient stayed within float32 rounding of eager
autograd at every compared step (and every assignment difference is a tie), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import torch

from ..config import MODES
from ..demo.report import check_schema, format_table, plot, to_dict, write_json
from ..demo.train import DemoSettings, DivergedError, run_demo
from .common import DefaultsAndRawDescription, ProgressBars, int_at_least, one_line_errors, output_dir_problem

#: The files train-demo writes into --out (name or glob -> kind, ``files.KINDS``).
OUTPUTS = {"train_demo.json": "json", "train_demo.png": "png"}
GRAPH_OUTPUTS = {"train_graph.json": "json", "train_graph.png": "png", "graphs/*.onnx": "onnx"}

#: torch intra-op threads of a run unless --threads says otherwise.
DEFAULT_THREADS = 1


#: --threads at most: more intra-op threads than this is a typo.
MAX_THREADS = 1024


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _threads(text: str) -> int:
    value = int_at_least(1)(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..{MAX_THREADS}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(prog="yolox-export train-demo", description=__doc__,
                                     formatter_class=DefaultsAndRawDescription)
    parser.add_argument("--steps", type=int_at_least(1), default=defaults.steps, help="training steps per run")
    parser.add_argument("--out", type=Path, default=Path("results/demo"),
                        help="output folder, relative to the current directory (created)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), metavar="MODE",
                        help=f"loss modes to train, of {', '.join(MODES)}")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of data, batch order and weights")
    parser.add_argument("--batch-size", type=int_at_least(1), default=defaults.batch_size, help="images per step")
    parser.add_argument("--image-size", type=int_at_least(1), default=defaults.image_size, help="pixels, divisible by 32")
    parser.add_argument("--num-classes", type=int_at_least(1), default=defaults.num_classes, help="shape classes (1-4)")
    parser.add_argument("--dataset-size", type=int_at_least(1), default=defaults.dataset_size, help="images in the data set")
    parser.add_argument("--lr", type=_positive_float, default=defaults.lr, help="SGD learning rate")
    parser.add_argument("--use-l1", action="store_true", help="add the L1 box term (YOLOX's last epochs)")
    parser.add_argument("--threads", type=_threads, default=DEFAULT_THREADS,
                        help="torch intra-op threads (this small detector gains little from more, and on this 2-core "
                             "machine shared with other work, 2 threads ran 4x to 10x slower than 1)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument("--from-graph", action="store_true",
                        help="train from the exported gradient graph under onnxruntime beside an eager reference run "
                             "(exports one graph per mode, about 15 s each; needs onnxruntime and onnxscript)")
    return one_line_errors(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = DemoSettings(steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                                num_classes=args.num_classes, dataset_size=args.dataset_size, seed=args.seed,
                                lr=args.lr, use_l1=args.use_l1)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.no_plot and importlib.util.find_spec("matplotlib") is None:
        print("error: the plot needs matplotlib (pip install -e \".[demo]\"); --no-plot skips it", file=sys.stderr)
        return 2
    outputs = {name: kind for name, kind in (GRAPH_OUTPUTS if args.from_graph else OUTPUTS).items()
               if not (args.no_plot and kind == "png")}
    problem = output_dir_problem(args.out, "--out", outputs)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        if args.from_graph:
            return _from_graph(settings, args)
        return _eager(settings, args)
    except DivergedError as error:
        print(f"error: {error} (--lr)", file=sys.stderr)
        return 1


def _eager(settings: DemoSettings, args: argparse.Namespace) -> int:
    result = run_demo(settings, args.modes, progress=ProgressBars("step"))
    write_json(result, args.out)
    data = to_dict(result)
    check_schema(data)
    print(f"{len(args.modes)} mode(s), {settings.steps} steps, batch {settings.batch_size}, "
          f"{settings.image_size}x{settings.image_size}, {settings.num_classes} classes, seed {settings.seed}, "
          f"{torch.get_num_threads()} thread(s): {result.seconds:.1f} s")
    print(format_table(data))
    print(f"wrote {args.out / 'train_demo.json'}")
    if not args.no_plot:
        print(f"wrote {plot(data, args.out / 'train_demo.png')}")
    real = [mode for mode, run in result.runs.items() if sum(run.same_input.cells) > sum(run.same_input.explained)
            or (run.first_difference is not None and run.first_difference.cause == "real")]
    if real:
        print(f"real assignment mismatch (no tie explains it) in: {', '.join(real)}", file=sys.stderr)
    return 1 if real else 0


def _from_graph(settings: DemoSettings, args: argparse.Namespace) -> int:
    from ..demo import graph_report
    from ..demo.graph_train import run_graph_demo

    for module in ("onnxruntime", "onnxscript"):
        if importlib.util.find_spec(module) is None:
            print(f"error: --from-graph needs {module} (pip install -e \".[cpu]\")", file=sys.stderr)
            return 2
    result = run_graph_demo(settings, args.modes, export_dir=args.out / "graphs", progress=ProgressBars("step"))
    data = graph_report.to_dict(result)
    exports = ", ".join(f"{mode} {seconds:.1f} s" for mode, seconds in result.export_seconds.items())
    print(f"{len(args.modes)} mode(s) from the exported graph, {settings.steps} steps, batch {settings.batch_size}, "
          f"{settings.image_size}x{settings.image_size}, {settings.num_classes} classes, seed {settings.seed}, "
          f"{torch.get_num_threads()} thread(s): {result.seconds:.1f} s (exports: {exports})")
    print(graph_report.format_table(data))
    print(f"wrote {graph_report.write_json(result, args.out)}")
    if not args.no_plot:
        print(f"wrote {graph_report.plot(data, args.out / 'train_graph.png')}")
    failed = [mode for mode, run in result.runs.items() if not run.within_rounding]
    if failed:
        print(f"the graph's loss or gradient left float32 rounding of eager autograd in: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0
