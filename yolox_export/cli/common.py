"""What the subcommands share: argument errors as one line on stderr and exit code 2, no usage dump, no traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping


class DefaultsAndRawDescription(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help that keeps the description's layout and shows every option's default."""


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


class ProgressBars:
    """The library's progress callback ``(label, done, total)`` drawn as one tqdm bar per label, on a terminal.

    The library reports progress through such a callback and never draws; this is the command line's drawing.
    ``enabled=None`` draws only when ``stream`` (default: stderr) is a terminal, so logs and pipes stay clean."""

    def __init__(self, unit: str = "step", stream=None, enabled: bool | None = None):
        self.unit, self.stream, self.enabled = unit, stream, enabled
        self.bars: dict[str, object] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(label)
        if bar is None:
            stream = sys.stderr if self.stream is None else self.stream
            disable = None if self.enabled is None else not self.enabled
            bar = self.bars[label] = tqdm(total=total, desc=label, unit=self.unit, file=stream, disable=disable,
                                          dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def output_file_problem(path: str | Path, flag: str, kind: str) -> str | None:
    """Why ``path`` is not ours to write as an output of ``kind`` (``files.KINDS``), as one line naming ``flag``,
    or None; checked before any work (the rule: ``yolox_export.files``)."""
    from ..files import output_problem, shown

    problem = output_problem(path, kind)
    return f"{flag} {shown(path)}: {problem}" if problem else None


def output_dir_problem(path: str | Path, flag: str, outputs: Mapping[str, str] = {}) -> str | None:  # noqa: B006
    """Why ``path`` cannot be used as an output folder whose ``outputs`` (name or glob -> kind) are ours to write,
    as one line naming ``flag``, or None; checked before any work."""
    from ..files import folder_problem, shown

    problem = folder_problem(path, outputs)
    return f"{flag} {shown(path)}: {problem}" if problem else None
