"""What the subcommands share: argument errors as one line on stderr and exit code 2, no usage dump, no traceback."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


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


def _parent_problem(path: Path) -> str | None:
    """Why files cannot be created at ``path`` (its nearest existing ancestor is not a writable folder), or None."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return None


def output_file_problem(path: str | Path, flag: str, onnx: bool = False) -> str | None:
    """Why ``path`` cannot be written as an output file, as one line naming ``flag``, or None; checked before any
    work. A folder is refused; with ``onnx`` an existing file that is not an ONNX model is refused (and left
    untouched), an existing ONNX model is replaced."""
    path = Path(path)
    if path.is_dir():
        return f"{flag} {path}: is a folder; give a file path"
    if path.exists() and onnx and not is_onnx_model(path):
        return f"{flag} {path}: exists and is not an ONNX model; not overwritten"
    problem = _parent_problem(path)
    return f"{flag} {path}: {problem}" if problem else None


def output_dir_problem(path: str | Path, flag: str) -> str | None:
    """Why ``path`` cannot be used as an output folder (created if missing), as one line naming ``flag``, or
    None; checked before any work."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            return f"{flag} {path}: is a file; give a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else f"{flag} {path}: is not writable"
    problem = _parent_problem(path)
    return f"{flag} {path}: {problem}" if problem else None


def is_onnx_model(path: Path) -> bool:
    """Whether ``path`` parses as an ONNX model (its tensors' external data not loaded)."""
    import onnx

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - anything onnx cannot parse is not a model
        return False
    return True
