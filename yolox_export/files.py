"""Output files: which paths this tool may write, and writing them atomically.

One rule for every command that writes (``export --output`` / ``--engine``, ``parity --json`` / ``--plot``,
``bench --out``, ``train-demo --out``, ``gpu-check --out``): a path is written only when it is ours to write, that is

- a regular file that does not exist yet, in a folder where files can be created (probed by creating one), or
- a regular file that this tool wrote, recognised by a marker every writer here puts in it (:data:`KINDS`): an ONNX
  graph by its ``metadata_props`` (``yolox_export.version`` and ``mode``, which ``export_onnx`` writes; a protobuf
  that merely parses is not enough), a JSON file by its top-level ``"written_by": "yolox-export"``, a markdown file
  by its first line :data:`MARKDOWN_MARKER`, a PNG by its ``yolox_export`` text chunk, a TensorRT engine by the
  names of the graph's inputs and outputs in its bytes.

Anything else is refused with a reason: a device (``/dev/null``), a FIFO, a socket, a folder where a file is
expected, a symlink to such or to nothing, a file this tool did not write (an empty file is not ours), a name the OS
refuses (a null byte, a control character, a component over the file system's name limit). A symlink to a file of
ours is followed: the file it points to is replaced and the link kept. The library reports problems as text
(:func:`output_problem`, :func:`folder_problem`) or raises :class:`OutputPathError` (a ``ValueError``); only the
command line prints them.

Writes go to a temporary file beside the target, then a rename, so an interrupted run never leaves half a model,
report or plot where a whole one is expected; the rename never replaces anything but a regular file.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

#: The marker's value: JSON ``written_by``, the PNG text chunk, the markdown comment.
WRITER = "yolox-export"
JSON_KEY = "written_by"
PNG_KEY = "yolox_export"
MARKDOWN_MARKER = f"<!-- written by {WRITER}; its next run may replace this file -->"
#: Metadata keys every graph ``export_onnx`` writes carries.
ONNX_KEYS = ("yolox_export.version", "mode")
#: Byte strings every engine built from one of our graphs holds (its tensors' names).
ENGINE_NAMES = (b"predictions", b"target_mask", b"loss_components")
#: Output kinds -> what the marker is, for messages.
KINDS = {
    "onnx": f"an ONNX graph whose metadata holds {', '.join(ONNX_KEYS)}",
    "engine": "a TensorRT engine of this tool's graph",
    "json": f"a JSON object with \"{JSON_KEY}\": \"{WRITER}\"",
    "markdown": "a markdown file starting with this tool's marker comment",
    "png": f"a PNG with a '{PNG_KEY}' text chunk",
}
#: Fallbacks where ``os.pathconf`` cannot tell.
NAME_MAX, PATH_MAX = 255, 4096


class OutputPathError(ValueError):
    """An output path that is not ours to write (see the module docstring); the message names it and says why."""


def shown(path: str | Path) -> str:
    """``path`` as a message shows it: as it is, or quoted with escapes when it holds a control character (so
    that a message stays one line)."""
    text = str(path)
    return repr(text) if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


def _describe(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _name_problem(path: Path) -> str | None:
    text = str(path)
    if "\0" in text:
        return "the name holds a null byte"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "the name holds a control character (a newline, tab, ...)"
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        return "the name cannot be encoded for this file system"
    ancestor = _nearest_existing(path)
    name_max, path_max = _limit(ancestor, "PC_NAME_MAX", NAME_MAX), _limit(ancestor, "PC_PATH_MAX", PATH_MAX)
    long = [part for part in path.parts if len(os.fsencode(part)) > name_max]
    if long:
        return f"the name {long[0][:40]!r}... is {len(os.fsencode(long[0]))} bytes, over this file system's " \
               f"limit of {name_max}"
    if len(encoded) >= path_max:
        return f"the path is {len(encoded)} bytes, over the limit of {path_max - 1}"
    return None


def _limit(folder: Path, name: str, fallback: int) -> int:
    try:
        return int(os.pathconf(folder, name))
    except (OSError, ValueError):
        return fallback


def _nearest_existing(path: Path) -> Path:
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _creation_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or, when it is missing, in its nearest existing ancestor), found
    by creating and removing one there: ``os.access`` says yes to root on /proc or on a read-only mount."""
    target = folder if os.path.lexists(folder) else _nearest_existing(folder)
    if not target.is_dir():
        return f"{target} is not a folder"
    try:
        if target == folder:
            handle, probe = tempfile.mkstemp(prefix=".yolox_export_probe_", dir=target)
            os.close(handle)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".yolox_export_probe_", dir=target))
    except OSError as error:
        return f"cannot create files in {target} ({error.strerror or error})"
    return None


def output_problem(path: str | Path, kind: str) -> str | None:
    """Why ``path`` is not ours to write as an output of ``kind`` (a key of :data:`KINDS`), or None. Checked
    before any work; reads the file only to find the marker, writes nothing but a probe that it removes."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    path = Path(path)
    problem = _name_problem(path)
    if problem:
        return problem
    if os.path.islink(path):
        if not path.exists():
            return f"is a symlink to {shown(os.readlink(path))}, which does not exist; not followed"
        target = path.resolve()
        problem = output_problem(target, kind)
        return f"is a symlink to {target}, which {problem}" if problem else None
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if mode is not None:
        if stat.S_ISDIR(mode):
            return "is a folder; give a file path"
        if not stat.S_ISREG(mode):
            return f"is {_describe(mode)}, not a regular file; only regular files are written"
        if not written_by_us(path, kind):
            return f"exists and was not written by {WRITER} (not {KINDS[kind]}); not overwritten"
    return _creation_problem(path.parent)


def folder_problem(path: str | Path, outputs: Mapping[str, str] = {}) -> str | None:  # noqa: B006 - read only
    """Why ``path`` cannot be used as an output folder (created when missing), or None. ``outputs`` maps the
    files written inside it (relative names, or glob patterns such as ``*_image*.png``, of which the existing
    matches are checked) to their kind; each must pass :func:`output_problem`."""
    path = Path(path)
    problem = _name_problem(path)
    if problem:
        return problem
    if os.path.lexists(path):
        if os.path.islink(path) and not path.exists():
            return f"is a symlink to {shown(os.readlink(path))}, which does not exist; not followed"
        mode = os.stat(path).st_mode
        if not stat.S_ISDIR(mode):
            return f"is {'a file' if stat.S_ISREG(mode) else _describe(mode)}; give a folder"
    problem = _creation_problem(path)
    if problem:
        return problem
    for name, kind in outputs.items():
        files = sorted(path.glob(name)) if any(c in name for c in "*?[") else [path / name]
        for file in files:
            problem = output_problem(file, kind)
            if problem:
                return f"{shown(file)}: {problem}"
    return None


def check_output(path: str | Path, kind: str) -> Path:
    """``path`` if it is ours to write as ``kind``; :class:`OutputPathError` naming it and why otherwise."""
    problem = output_problem(path, kind)
    if problem:
        raise OutputPathError(f"{shown(path)}: {problem}")
    return Path(path)


def written_by_us(path: str | Path, kind: str) -> bool:
    """Whether the regular file ``path`` carries this tool's marker for ``kind`` (see the module docstring)."""
    path = Path(path)
    try:
        if kind == "onnx":
            return _onnx_is_ours(path)
        data = path.read_bytes()
    except (OSError, ValueError):
        return False
    if kind == "engine":
        return all(name in data for name in ENGINE_NAMES)
    if kind == "json":
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return False
        return isinstance(document, dict) and document.get(JSON_KEY) == WRITER
    if kind == "markdown":
        return data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r") == MARKDOWN_MARKER
    return _png_text(data).get(PNG_KEY, "").startswith(WRITER)


def _onnx_is_ours(path: Path) -> bool:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - anything onnx cannot parse is not ours
        return False
    keys = {entry.key for entry in model.metadata_props}
    return all(key in keys for key in ONNX_KEYS) and len(model.graph.node) > 0


def _png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks before the image data of PNG ``data`` (empty when it is not a PNG)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return {}
    found, at = {}, 8
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if kind == b"IDAT":
            break
        if kind == b"tEXt":
            key, _, value = data[at + 8:at + 8 + length].partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return found


def _writable_target(path: Path) -> Path:
    """The regular file (existing or not) that writing ``path`` replaces: the end of its symlinks. Raises
    :class:`OutputPathError` for a target that exists and is not a regular file, or a dangling symlink."""
    if os.path.islink(path):
        if not path.exists():
            raise OutputPathError(f"{shown(path)}: is a symlink to {shown(os.readlink(path))}, which does not exist; "
                                  "not followed")
        path = path.resolve()
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return path
    if not stat.S_ISREG(mode):
        raise OutputPathError(f"{shown(path)}: is {_describe(mode)}, not a regular file; only regular files are "
                              "written")
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that takes a path (``onnx.save``, ``savefig``); on a
    clean exit it is renamed to ``path``, on an error removed. Parent folders are created. A symlink is followed
    (the file it points to is replaced); :class:`OutputPathError` when ``path`` is, or becomes, anything but a
    regular file or a missing one."""
    target = _writable_target(Path(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{os.getpid()}-{secrets.token_hex(4)}.tmp{target.suffix[:16]}")
    try:
        yield temporary
        _writable_target(target)  # checked again: nothing but a regular file is ever replaced
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temporary:
        if isinstance(data, bytes):
            temporary.write_bytes(data)
        else:
            temporary.write_text(data, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, document: Mapping, **dumps_options) -> Path:
    """Write the JSON object ``document`` with this tool's marker (``"written_by": "yolox-export"`` first)."""
    text = json.dumps({JSON_KEY: WRITER, **document}, **{"indent": 1, **dumps_options})
    return write_atomically(path, text + "\n")


def write_markdown(path: str | Path, text: str) -> Path:
    """Write markdown ``text`` with this tool's marker comment as its first line."""
    return write_atomically(path, f"{MARKDOWN_MARKER}\n{text}")


def save_figure(figure, path: str | Path, **savefig_options) -> Path:
    """Save a matplotlib ``figure`` as a PNG with this tool's marker (a ``yolox_export`` text chunk)."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", metadata={PNG_KEY: WRITER}, **savefig_options)
    return Path(path)
