"""Audit which targets SimOTA leaves without cells, in recorded batches (see --help).

Same as ``yolox-export audit``; the code lives in ``yolox_export/cli/audit.py``.
"""

import sys

from yolox_export.cli.audit import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
