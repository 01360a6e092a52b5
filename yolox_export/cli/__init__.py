"""The ``yolox-export`` command: argument parsing, printing and progress bars only; the work is done by the library.

Subcommands are registered in :data:`SUBCOMMANDS` (name -> module, one-line description); each module has
``build_parser()`` and ``main(argv=None) -> int``. Adding a subcommand is one line here and one module beside this
one. A subcommand's module is imported only when it runs, so ``yolox-export --help`` and ``--version`` are fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    module: str
    summary: str


#: name -> subcommand, in the order ``--help`` lists them.
SUBCOMMANDS = {
    "export": Subcommand("yolox_export.cli.export",
                         "export the static assignment + loss graph to ONNX, validate it, optionally build a "
                         "TensorRT engine (writes ./models/)"),
    "parity": Subcommand("yolox_export.cli.parity",
                         "compare the static module, an exported graph or an engine with the eager references, on "
                         "seeded scenarios or your recorded batches; ties explained"),
    "audit": Subcommand("yolox_export.cli.audit",
                        "which targets SimOTA leaves without cells, in your recorded batches: a table, totals per "
                        "class and size, pictures (writes ./results/)"),
    "bench": Subcommand("yolox_export.cli.bench",
                        "time the static module, its compiled and exported forms against the eager references "
                        "(writes ./results/)"),
    "train-demo": Subcommand("yolox_export.cli.train_demo",
                             "train a small detector with each reference loss and its static twin, compare the "
                             "curves step by step (writes ./results/demo/)"),
    "gpu-check": Subcommand("yolox_export.cli.gpu_check",
                            "validate a CUDA machine in one run: CUDA tests, engines, GPU parity and benchmark "
                            "(writes ./results/)"),
}


#: Set (to anything) to get the traceback of an unexpected error instead of its one line.
TRACEBACK_VARIABLE = "YOLOX_EXPORT_TRACEBACK"


def version() -> str:
    """The installed distribution's version (the package's own when it runs from a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("yolox-export")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def help_text() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: yolox-export [-h] [--version] COMMAND [options]", "",
             "YOLOX SimOTA label assignment and loss as one static-shape module: export, parity, benchmark.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in SUBCOMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this message and exit", "  --version   print the version and exit",
              "", "yolox-export COMMAND --help shows each command's options and defaults."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``yolox-export COMMAND ...``: run the subcommand's ``main`` with the remaining arguments."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(help_text(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(help_text())
        return 0
    if argv[0] == "--version":
        print(f"yolox-export {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(SUBCOMMANDS)} (yolox-export --help)",
              file=sys.stderr)
        return 2
    try:
        return importlib.import_module(SUBCOMMANDS[name].module).main(rest)
    except KeyboardInterrupt:
        print(f"error: {name} interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last resort behind each command's own checks
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        first = (str(error).strip().splitlines() or [""])[0]
        print(f"error: {name} failed: {type(error).__name__}: {first} (set {TRACEBACK_VARIABLE}=1 for the "
              "traceback)", file=sys.stderr)
        return 1
