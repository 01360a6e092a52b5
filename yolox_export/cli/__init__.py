"""The ``yolox-export`` command: argument parsing and printing only; the work is done by the library.

Subcommands are registered in :data:`SUBCOMMANDS` (name -> module); each module has ``build_parser()`` and
``main(argv=None) -> int``. Adding a subcommand is one line here and one module beside this one.
"""

from __future__ import annotations

import importlib
import sys

#: name -> module implementing the subcommand (``build_parser``, ``main``), in the order ``--help`` lists them.
SUBCOMMANDS = {
    "export": "yolox_export.cli.export",
    "parity": "yolox_export.cli.parity",
    "bench": "yolox_export.cli.bench",
    "train-demo": "yolox_export.cli.train_demo",
    "gpu-check": "yolox_export.cli.gpu_check",
}

USAGE = "usage: yolox-export {" + ",".join(SUBCOMMANDS) + "} [options]  (yolox-export COMMAND --help for each)"


def main(argv: list[str] | None = None) -> int:
    """``yolox-export COMMAND ...``: run the subcommand's ``main`` with the remaining arguments."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(SUBCOMMANDS[name]).main(rest)
