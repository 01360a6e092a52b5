"""Export the static YOLOX assignment + loss graph to ONNX, validate it, optionally build a TensorRT engine.

Same as ``yolox-export export``; the code lives in ``yolox_export/cli/export.py``.
"""

import sys

from yolox_export.cli.export import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
