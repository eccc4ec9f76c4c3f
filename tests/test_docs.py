"""The documentation a newcomer reads: README stays one screen per task, links work.

Every relative link in README.md and in docs/**/*.md must name a file or
folder that exists, and a `#anchor` must name a heading of its target page
(GitHub's heading ids). Every page under docs/ must be reachable from README
by following links, so no page is orphaned. README stays at most 200 lines
and shows the two contract commands of its quick start.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 200

# [text](target) or [text](target "title"); images too. The text may hold
# backticks and nested brackets one level deep ([`a`](b), [![x](y)](z)).
INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (reference-style definitions)
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str


def prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, with 1-based numbers (code is not a link)."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            out.append((number, line))
    return out


def links_of(page: Path) -> list[Link]:
    """Every link target written in `page`'s prose (inline code spans excluded)."""
    links: list[Link] = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        # `[a](b)` inside backticks is shown as code, not followed by a reader
        line = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        ref = REFERENCE_DEF.match(line)
        if ref:
            targets.append(ref.group(1))
        links.extend(Link(page, number, t) for t in targets)
    return links


def slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = unicodedata.normalize("NFC", text.strip().lower())
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
    """The ids GitHub gives `page`'s headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    ids: set[str] = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        ids.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return ids


def broken_links(page: Path, root: Path) -> list[str]:
    """What is wrong with `page`'s relative links, one message per bad link."""
    problems: list[str] = []
    for link in links_of(page):
        if EXTERNAL.match(link.target):
            continue
        path_part, _, anchor = link.target.partition("#")
        where = f"{link.page.relative_to(root)}:{link.line}: {link.target}"
        target = (page.parent / path_part).resolve() if path_part else page
        if not target.exists():
            problems.append(f"{where}: no such file")
            continue
        if root.resolve() not in (target, *target.parents):
            problems.append(f"{where}: points outside the repository")
            continue
        if anchor:
            if target.is_dir() or target.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif anchor not in anchors_of(target):
                problems.append(f"{where}: no heading with id #{anchor}")
    return problems


def reachable_pages(start: Path) -> set[Path]:
    """Markdown pages reached from `start` by following relative links."""
    seen: set[Path] = set()
    todo = [start.resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for link in links_of(page):
            if EXTERNAL.match(link.target):
                continue
            path_part = link.target.partition("#")[0]
            if not path_part:
                continue
            target = (page.parent / path_part).resolve()
            if target.is_dir() and (target / "README.md").is_file():
                target = target / "README.md"  # GitHub shows a folder's README
            if target.is_file() and target.suffix == ".md":
                todo.append(target)
    return seen


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


# -- the checker itself: it must find what a reader would trip on ----------


def test_checker_finds_broken_links_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# Real data\n\n## Real data\n\n## `serve` and *predict*\n"
    )
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#real-data) [ok](docs/a.md#real-data-1)\n"
        "[ok](docs/a.md#serve-and-predict) [ok](#top) [ok](https://example.org/x)\n"
        "[missing](docs/b.md) [bad anchor](docs/a.md#nowhere) [outside](../x.md)\n"
        "`[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n"
        "# Top\n"
    )
    (tmp_path.parent / "x.md").write_text("outside the repository\n")
    problems = broken_links(page, tmp_path)
    assert [p.split(": ", 2)[1:] for p in problems] == [
        ["docs/b.md", "no such file"],
        ["docs/a.md#nowhere", "no heading with id #nowhere"],
        ["../x.md", "points outside the repository"],
    ]


def test_slug_matches_github_ids() -> None:
    assert slug("Tracing IFEED to MELD") == "tracing-ifeed-to-meld"
    assert slug("Serving: `crossemotion serve`, predict, Gradio") == (
        "serving-crossemotion-serve-predict-gradio"
    )
    assert slug("1. Input: context (MiniLM-L6)") == "1-input-context-minilm-l6"
    assert slug("Results — demo data") == "results--demo-data"


# -- the repository's pages --------------------------------------------------


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page, ROOT) == []


def test_every_docs_page_is_reachable_from_readme() -> None:
    reached = reachable_pages(README)
    orphans = [str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md") if p.resolve() not in reached]
    assert orphans == [], "pages under docs/ that no link path from README.md reaches"


def test_every_top_level_docs_page_is_linked_from_readme() -> None:
    linked = {
        (README.parent / link.target.partition("#")[0]).resolve()
        for link in links_of(README)
        if not EXTERNAL.match(link.target) and link.target.partition("#")[0]
    }
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert missing == []


def test_readme_is_one_screen_per_task() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_quick_start_shows_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)
    assert len(quick) == 2, "README.md has no '## Quick start' section"
    section = quick[1].split("\n## ", 1)[0]
    commands = [
        line.split("#", 1)[0].strip()
        for line in section.splitlines()
        if line.strip().startswith("make ")
    ]
    assert commands == ["make demo", "make test"]


def test_readme_shows_serving() -> None:
    text = README.read_text(encoding="utf-8")
    for command in ("crossemotion serve --models", "crossemotion predict", "crossemotion demo-ui"):
        assert command in text, f"README.md does not show `{command}`"
