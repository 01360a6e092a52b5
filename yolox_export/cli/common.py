"""What the subcommands share: argument errors as one line on stderr and exit code 2, no usage dump, no traceback."""

from __future__ import annotations

import argparse
import sys


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad option as ``error: ...`` on one line and exit with code 2."""

    def error(message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = error
    return parser


def int_at_least(minimum: int):
    """An argparse ``type``: an integer >= ``minimum``, else a one-line ArgumentTypeError."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse
