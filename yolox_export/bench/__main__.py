"""``python -m yolox_export.bench JOBS.json RESULTS.json`` (a worker) or ``--profile SPEC.json OUT.md``."""

import sys

from .profile import profile_main
from .worker import worker_main

if __name__ == "__main__":
    sys.exit(profile_main(sys.argv[2:]) if sys.argv[1:2] == ["--profile"] else worker_main(sys.argv[1:]))
