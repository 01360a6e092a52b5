"""Training-curve parity demo: train a small YOLOX-style detector on synthetic shapes with each eager reference loss
and with its static twin, from one seed, and compare the curves step by step.

    python scripts/train_demo.py                          # every mode, default steps, results/demo/
    python scripts/train_demo.py --steps 40 --modes fast --out /tmp/demo

Exit code: 0 when no assignment difference is a real mismatch, 1 when one is, 2 for a usage error.
"""

import sys

from yolox_export.cli.train_demo import main

if __name__ == "__main__":
    sys.exit(main())
