"""Benchmark the static YOLOX assignment + loss against the eager references (see --help).

Same as ``yolox-export bench``; the code lives in ``yolox_export/cli/bench.py``.
"""

import sys

from yolox_export.cli.bench import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
