"""Benchmark the static YOLOX assignment + loss against the eager references (RegularYoloXLoss, FastYoloXLoss,
MegviiYoloXLoss, MMDetYoloXLoss) on seeded inputs.

    yolox-export bench            # the project's target configuration: 2 threads, B=16, 640x640, C=80,
                                  # COCO-like and crowded targets, every mode (several minutes on a CPU)
    yolox-export bench --quick    # a small subset (under two minutes)
    yolox-export bench --full     # batch 1/8/16/32 x image 320/640/1280 x both kinds (hours on a CPU)
    yolox-export bench --growth   # megvii mode: G = 10..400 targets per image x image 320/640/1280 (an hour or more)
    yolox-export bench --scale    # every mode, G = 100..1000 at B=16: time and peak memory, budget on and off
    yolox-export bench --scale --batch 2 --targets-per-image 5000 --out results/crowd   # a dense crowd

(``python scripts/bench.py`` is the same command.) Writes results/bench.json, results/bench.md (the table in
docs/benchmarks.md) and results/bench.png, and prints PASS/MISS per target (targets:
yolox_export/bench/targets.toml). Method (timing, ratios, peak memory): see the docstring of the yolox_export.bench
package.
"""

from __future__ import annotations

import argparse
import re
import sys

from .. import bench
from ..bench.profile import write_profiles
from ..config import MODES
from ..scenarios import KINDS as KINDS_FOR_HELP
from .common import ProgressBars, one_line_errors, output_dir_problem

#: What the help text shows as each setting's default and the other presets' values.
PRESETS_FOR_HELP = bench.PRESETS


#: The files bench writes into --out (name or glob -> kind, ``files.KINDS``); the ONNX cache's graphs are read
#: back when they exist, so they must be ours too.
OUTPUTS = {"bench.json": "json", "bench.md": "markdown", "bench.png": "png", "growth.png": "png",
           "scale.png": "png", "profile.md": "markdown", "onnx_cache/*.onnx": "onnx"}

#: Settings named in the library's errors -> the flags that set them.
FLAGS = {"kinds": "--kinds", "modes": "--modes", "subjects": "--subjects", "batches": "--batch",
         "image_sizes": "--image-size", "num_classes": "--num-classes", "threads": "--threads", "repeats": "--repeats",
         "warmup": "--warmup", "max_seconds": "--max-seconds", "timeout": "--timeout",
         "omp_wait_policy": "--omp-wait-policy", "targets_per_image": "--targets-per-image"}


def _flag_wording(message: str) -> str:
    """``message`` with the setting names the library uses replaced by their flags."""
    return re.sub(r"\b(" + "|".join(FLAGS) + r")\b", lambda m: FLAGS[m.group(1)], message)


def _defaults(key: str) -> str:
    """"default: X; --quick: Y, ..." for a setting that the presets set (``bench.settings.PRESETS``)."""

    def shown(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)

    presets = PRESETS_FOR_HELP
    default = presets["targets"].get(key)
    others = [f"--{name} {shown(p[key])}" for name, p in presets.items() if name != "targets" and key in p
              and p[key] != default]
    return f"default: {shown(default)}" + (f"; {', '.join(others)}" if others else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolox-export bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_const", const="quick", dest="preset", help="small subset")
    preset.add_argument("--full", action="store_const", const="full", dest="preset", help="the full sweep")
    preset.add_argument("--scale", action="store_const", const="scale", dest="preset",
                        help="crowded scale: every mode at G = 100..1000 (B=16, 640x640), budget on and off, and the "
                        "references until one call passes --timeout: table and scale.png")
    preset.add_argument("--growth", action="store_const", const="growth", dest="preset",
                        help="megvii mode's growth with G (10..400 targets per image) and image size (320..1280): "
                        "table and growth.png")
    parser.add_argument("--batch", type=int, nargs="+", dest="batches", metavar="B",
                        help=f"batch sizes ({_defaults('batches')})")
    parser.add_argument("--image-size", type=int, nargs="+", dest="image_sizes", metavar="S",
                        help=f"square image sizes in pixels, multiples of 32 ({_defaults('image_sizes')})")
    parser.add_argument("--kinds", nargs="+", metavar="KIND",
                        help=f"scenario kinds, of {', '.join(KINDS_FOR_HELP)} ({_defaults('kinds')})")
    parser.add_argument("--modes", nargs="+", metavar="MODE",
                        help=f"static modes, of {', '.join(MODES)} ({_defaults('modes')})")
    parser.add_argument("--subjects", nargs="+", metavar="NAME",
                        help=f"subjects, of {', '.join(bench.SUBJECTS)} (default: all that can run here; --growth "
                             f"{' '.join(PRESETS_FOR_HELP['growth']['subjects'])})")
    parser.add_argument("--num-classes", type=int, metavar="C", help=f"number of classes ({_defaults('num_classes')})")
    parser.add_argument("--targets-per-image", type=int, nargs="+", metavar="N", help="exactly N targets in every "
                        "image, 0: the kind's own counts (default: 0; --growth 10 25 50 100 200 400)")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help=f"timed calls per measurement, at most ({_defaults('repeats')})")
    parser.add_argument("--warmup", type=int, metavar="N", help=f"untimed calls before timing ({_defaults('warmup')})")
    parser.add_argument("--max-seconds", type=float, metavar="S", help="stop timing a measurement after S seconds "
                        f"once min(3, repeats) calls are in ({_defaults('max_seconds')})")
    parser.add_argument("--threads", type=int, metavar="N",
                        help=f"torch / onnxruntime intra-op threads ({_defaults('threads')})")
    parser.add_argument("--seed", type=int, help="scenario seed (default: 0)")
    parser.add_argument("--out", default="results", metavar="DIR",
                        help="output folder, relative to the current directory (default: %(default)s)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="per-subject worker timeout in seconds (default: 3600)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--one-process", action="store_false", dest="isolate", default=None,
                       help="run all subjects one after another in one worker process (faster, memory less "
                       "isolated; --quick's default)")
    where.add_argument("--isolate", action="store_true", dest="isolate", default=None,
                       help="run each subject in its own fresh worker process (default, except with --quick)")
    parser.add_argument("--omp-wait-policy", choices=bench.OMP_WAIT_POLICIES, help="OMP_WAIT_POLICY of the "
                        "subprocesses; PASSIVE (default) also turns onnxruntime's spinning off")
    parser.add_argument("--profile", action="store_true", help="also write DIR/profile.md: torch.profiler of "
                        "StaticYoloXLoss eager and onnxruntime's node profile, per case and mode")

    return one_line_errors(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    options = {key: getattr(args, key) for key in ("batches", "image_sizes", "kinds", "modes", "subjects",
                                                   "num_classes", "repeats", "warmup", "max_seconds", "threads",
                                                   "seed", "timeout", "isolate", "omp_wait_policy",
                                                   "targets_per_image")}
    problem = output_dir_problem(args.out, "--out", OUTPUTS)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        settings = bench.make_settings(args.preset or "targets", out=args.out, profile=args.profile, **options)
    except ValueError as error:
        print(f"error: {_flag_wording(str(error))}", file=sys.stderr)
        return 2
    bars = ProgressBars("job")
    try:
        results = bench.run_benchmark(settings, argv, log=print, progress=bars)
    finally:
        bars.close()
    paths = bench.write_outputs(results, settings.out)
    if settings.profile:
        paths["profile"] = write_profiles(settings, log=print)
    print("\n".join(bench.target_lines(results)))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0

