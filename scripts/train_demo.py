"""Training-curve parity demo: train a small YOLOX-style detector on synthetic shapes with each eager reference loss
and with its static twin, from one seed, and compare the curves step by step (see --help).

Same as ``yolox-export train-demo``; the code lives in ``yolox_export/cli/train_demo.py``.
"""

import sys

from yolox_export.cli.train_demo import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
