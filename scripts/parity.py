"""Parity of the static YOLOX assignment + loss against the eager references (see --help).

Same as ``yolox-export parity``; the code lives in ``yolox_export/cli/parity.py``.
"""

import sys

from yolox_export.cli.parity import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
