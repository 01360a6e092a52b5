"""Validate a CUDA machine: CUDA tests, exports and engines, GPU parity, the CUDA benchmark (see --help).

Same as ``yolox-export gpu-check``; the code lives in ``yolox_export/cli/gpu_check.py``.
"""

import sys

from yolox_export.cli.gpu_check import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
