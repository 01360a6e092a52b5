"""README.md and docs/*.md: every python block runs (or names its framework), the README stays short, and every
relative link points at a file that exists.

The rule for a fenced python block, by its info string (documented in docs/development.md):

* ```` ```python ````: runs as it is with the package installed as ``.[cpu]``, in seconds; run here in a fresh
  namespace in an empty temporary folder.
* ```` ```python full ````: runs as it is too, but takes longer (torch.compile); run here under ``pytest --full``.
* ```` ```python framework ````: needs a training framework that this project never installs; it must import one
  (super_gradients, yolox, mmdet, mmengine, mmyolo) so that the reader sees where its model comes from. Only
  compiled here, never run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
FRAMEWORKS = ("super_gradients", "yolox", "mmdet", "mmengine", "mmyolo")
KINDS = ("", "full", "framework")

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)|!\[[^\]]*\]\((?P<image>[^)\s]+)\)")


def python_blocks(page: Path) -> list[tuple[str, int, str]]:
    """(kind, line, code) of each fenced block whose info string starts with ``python``."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if words and words[0] == "python":
            kind = " ".join(words[1:])
            blocks.append((kind, text.count("\n", 0, match.start()) + 1, match["code"]))
    return blocks


BLOCKS = [pytest.param(kind, code, id=f"{page.relative_to(ROOT)}:{line}")
          for page in PAGES for kind, line, code in python_blocks(page)]


def test_the_readme_has_runnable_and_framework_blocks():
    kinds = {kind for kind, _, _ in python_blocks(ROOT / "README.md")}
    assert {"", "framework"} <= kinds  # runnable snippets and one framework snippet at least


@pytest.mark.parametrize("kind, code", BLOCKS)
def test_python_block(kind, code, tmp_path, monkeypatch, full):
    assert kind in KINDS, f"unknown python block kind {kind!r}; use one of {KINDS} (docs/development.md)"
    compiled = compile(code, "<doc block>", "exec")
    if kind == "framework":
        imported = re.findall(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", code, re.MULTILINE)
        assert set(imported) & set(FRAMEWORKS), f"a framework block imports one of {FRAMEWORKS}, got {imported}"
        return
    if kind == "full" and not full:
        pytest.skip("a block marked `python full` (torch.compile: tens of seconds) runs under --full")
    monkeypatch.chdir(tmp_path)
    exec(compiled, {"__name__": "__main__"})


def test_one_runnable_readme_block_runs_the_graph_under_onnxruntime():
    runnable = [code for kind, _, code in python_blocks(ROOT / "README.md") if kind == ""]
    assert any("onnxruntime.InferenceSession" in code and ".run(" in code for code in runnable)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))  # code blocks hold no links
    targets = [m["target"] or m["image"] for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(page):
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / t.split("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"docs pages not linked from README.md: {sorted(p.name for p in pages - linked)}"
