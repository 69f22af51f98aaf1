"""The documents hold together: the README stays short and in its order, every relative
link and image resolves, and bench/results keeps exactly the runs the documents cite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results"
README_MAX_BYTES = 20_000
README_SECTIONS = ["Quickstart", "Integrate", "Operate", "Reference"]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); the target ends at a space (a title) or ")".
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
# A run of bench/results, by file name: bench-<UTC>[-quick], books-<time>, or any name
# after results/.
_CITATION = re.compile(
    r"(?:results/([\w.-]+\.(?:md|json)))"
    r"|\b((?:bench-\d{8}T\d{6}Z(?:-quick)?|books-\d{8}-\d{6})\.(?:md|json))\b"
)


def documents() -> list[Path]:
    return [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text a reader sees as prose: fenced blocks and inline code are examples, not
    links or headings."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, title in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in _LINK.findall(_prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor}")
    return broken


def citations(text: str) -> set[str]:
    return {a or b for a, b in _CITATION.findall(text)}


def test_the_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, f"README.md is {size} bytes: move detail to docs/"


def test_the_readme_sections_come_in_order() -> None:
    sections = [
        title
        for hashes, title in _HEADING.findall(_FENCE.sub("", README.read_text()))
        if hashes == "##"
    ]
    assert sections == README_SECTIONS


def test_every_relative_link_and_image_resolves() -> None:
    broken = {str(doc.relative_to(ROOT)): broken_links(doc) for doc in documents()}
    assert {doc: links for doc, links in broken.items() if links} == {}


def test_every_cited_run_is_kept() -> None:
    kept = {path.name for path in RESULTS.iterdir()}
    missing = {
        str(doc.relative_to(ROOT)): sorted(citations(doc.read_text()) - kept) for doc in documents()
    }
    assert {doc: names for doc, names in missing.items() if names} == {}


def test_every_kept_run_is_cited() -> None:
    cited = set().union(*(citations(doc.read_text()) for doc in documents()))
    # A run's .json is its raw figures, cited through the tables of the .md beside it.
    uncited = sorted(
        path.name
        for path in RESULTS.iterdir()
        if path.name not in cited and f"{path.name.rsplit('.', 1)[0]}.md" not in cited
    )
    assert uncited == [], "cite these in bench/README.md, or delete them"


def test_the_checks_see_what_they_check(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## The ISP protocol (LIVE)\n")
    page.write_text(
        "# Page\n\n[ok](other.md#the-isp-protocol-live) [up](#page) [web](https://x.example)\n"
        "[gone](missing.md) ![img](gone.png) [bad](other.md#nowhere)\n"
        "`[code](skipped.md)`\n```\n[fenced](skipped.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "gone.png: no such file",
        "other.md#nowhere: no heading #nowhere",
    ]
    assert citations("results/a-b.md, bench-20261123T122427Z.md, books-20261207-174126.json") == {
        "a-b.md",
        "bench-20261123T122427Z.md",
        "books-20261207-174126.json",
    }
