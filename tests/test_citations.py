"""Citations of repository documents in src/nerfsculpt resolve.

- Every ``docs/<path>.md`` named in a source file exists.
- A ``docs/method/<name>.md`` citation followed by ``§N[.N...]`` (also a range ``§5.2-5.3`` or ``§4.1-§4.5``,
  a list ``§0.2-0.3, §1.1``, possibly after a line break and comment/docstring indentation), by
  ``Appendix X [rows ...]`` or by ``quirk N``, or preceded by ``§N of``, names a Markdown heading of that
  file: ``## 5. ...`` for §5, ``### 5.2 ...`` for §5.2, ``## Appendix A...``, a heading containing
  ``Quirk N``; cited Appendix rows exist as table rows.
- No source file cites ``reference_method.md`` or ``eg3d.md §`` outside ``docs/method/``.

Pure text scanning: no torch, well under a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "nerfsculpt"

SEC = r"\d+(?:\.\d+)*"
DOC_PATH = re.compile(r"(?<![\w/.-])docs/(?:[\w.-]+/)*[\w.-]+\.md\b")
METHOD_DOC = r"docs/method/[\w-]+\.md"
# Between a cited path (or a list separator) and the next item: closing quotes, blanks, at most one line
# break followed by indentation and an optional comment marker.
GAP = r"(?:``|`|\"|')?[ \t]*(?:\n[ \t]*(?:\#[ \t]*)?)?"
ROWS = r"\d+(?:[ \t]*[-–][ \t]*\d+)?(?:,[ \t]*\d+(?:[ \t]*[-–][ \t]*\d+)?(?![.\d]))*"
ITEM = re.compile(
    rf"§(?P<start>{SEC})(?:[-–](?P<mark>§)?(?P<end>{SEC}))?"
    rf"|Appendix[ \t]+(?P<appendix>[A-Z])(?:[ \t]+rows?[ \t]+(?P<rows>{ROWS}))?"
    r"|[Qq]uirk[ \t]+(?P<quirk>\d+)"
)
AFTER_PATH = re.compile(rf"(?P<doc>{METHOD_DOC}){GAP}")
SEPARATOR = re.compile(rf",{GAP}")
BEFORE_PATH = re.compile(
    rf"§(?P<start>{SEC})(?:[-–](?P<mark>§)?(?P<end>{SEC}))?[ \t]+of[ \t]+(?:``|`)?(?P<doc>{METHOD_DOC})"
)
BARE = re.compile(r"[\w./-]*(?:reference_method\.md|eg3d\.md(?=\s*(?:§|[Qq]uirk|Appendix)))")


@dataclass(frozen=True)
class Citation:
    line: int
    doc: str  # path relative to the repository root
    kind: str  # "section", "appendix", "rows" or "quirk"
    label: str  # "5.2", "A", "A:8" or "2"


@dataclass
class Headings:
    sections: set[str] = field(default_factory=set)
    appendices: set[str] = field(default_factory=set)
    quirks: set[str] = field(default_factory=set)
    rows: set[str] = field(default_factory=set)  # "A:8": row 8 of a table under Appendix A


def parse_headings(text: str) -> Headings:
    """Section numbers, appendix letters, quirk numbers and appendix table rows of a Markdown text."""
    found = Headings()
    appendix = None
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        heading = re.match(r"(#+)[ \t]+(.*)", line)
        if heading:
            title = heading.group(2)
            number = re.match(rf"({SEC})\.?(?:[ \t]|$)", title)
            if number:
                found.sections.add(number.group(1))
            letter = re.match(r"Appendix[ \t]+([A-Z])\b", title)
            appendix = letter.group(1) if letter else (appendix if len(heading.group(1)) > 2 else None)
            if letter:
                found.appendices.add(letter.group(1))
            found.quirks.update(re.findall(r"\bquirk[ \t]+(\d+)\b", title, flags=re.IGNORECASE))
            continue
        row = re.match(r"\|[ \t]*(\d+)[ \t]*\|", line)
        if row and appendix:
            found.rows.add(f"{appendix}:{row.group(1)}")
    return found


def _range_end(start: str, end: str, marked: bool) -> str:
    """End of a range: ``§4.1-§4.5`` and ``§5.2-5.3`` name it in full; in ``§5.2-3`` (no second ``§``) a
    shorter end replaces the last components of the start (5.3)."""
    head, tail = start.split("."), end.split(".")
    return end if marked else ".".join(head[: max(len(head) - len(tail), 0)] + tail)


def _row_numbers(rows: str) -> list[str]:
    numbers = []
    for part in rows.split(","):
        bounds = [int(b) for b in re.split(r"[-–]", part.strip())]
        numbers += [str(n) for n in range(bounds[0], bounds[-1] + 1)]
    return numbers


def _item_citations(match: re.Match, doc: str, line: int) -> list[Citation]:
    if match.group("start"):
        labels = [match.group("start")]
        if match.group("end"):
            labels.append(_range_end(match.group("start"), match.group("end"), bool(match.group("mark"))))
        return [Citation(line, doc, "section", label) for label in labels]
    if match.group("appendix"):
        letter = match.group("appendix")
        cites = [Citation(line, doc, "appendix", letter)]
        if match.group("rows"):
            cites += [Citation(line, doc, "rows", f"{letter}:{n}") for n in _row_numbers(match.group("rows"))]
        return cites
    return [Citation(line, doc, "quirk", match.group("quirk"))]


def find_citations(text: str) -> list[Citation]:
    """Section / appendix / quirk citations of ``docs/method/*.md`` files in ``text``."""

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    cites: list[Citation] = []
    for path in AFTER_PATH.finditer(text):
        pos = path.end()
        while item := ITEM.match(text, pos):
            cites += _item_citations(item, path.group("doc"), line_of(item.start()))
            separator = SEPARATOR.match(text, item.end())
            if not separator or not ITEM.match(text, separator.end()):
                break
            pos = separator.end()
    for before in BEFORE_PATH.finditer(text):
        cites += _item_citations(before, before.group("doc"), line_of(before.start()))
    return cites


def _describe(cite: Citation) -> str:
    if cite.kind == "section":
        return f"§{cite.label}"
    if cite.kind == "appendix":
        return f"Appendix {cite.label}"
    if cite.kind == "rows":
        return "Appendix {} row {}".format(*cite.label.split(":"))
    return f"quirk {cite.label}"


def check_sources(root: Path, sources: Iterable[Path]) -> list[str]:
    """Every broken citation in ``sources`` as ``file:line: problem`` (file relative to ``root``)."""
    problems: list[str] = []
    headings: dict[str, Headings | None] = {}

    def doc_headings(doc: str) -> Headings | None:
        if doc not in headings:
            path = root / doc
            headings[doc] = parse_headings(path.read_text(encoding="utf-8")) if path.is_file() else None
        return headings[doc]

    for source in sorted(sources):
        text = source.read_text(encoding="utf-8")
        name = source.relative_to(root).as_posix() if source.is_relative_to(root) else str(source)

        def where(pos: int, text: str = text, name: str = name) -> str:
            return f"{name}:{text.count(chr(10), 0, pos) + 1}"

        for doc in DOC_PATH.finditer(text):
            if doc_headings(doc.group()) is None:
                problems.append(f"{where(doc.start())}: {doc.group()} does not exist")
        for bare in BARE.finditer(text):
            if not bare.group().startswith("docs/method/"):
                problems.append(f"{where(bare.start())}: {bare.group()!r} is not a docs/method/ path")
        for cite in find_citations(text):
            found = doc_headings(cite.doc)
            if found is None:
                continue  # reported above
            known = {"section": found.sections, "appendix": found.appendices, "quirk": found.quirks,
                     "rows": found.rows}[cite.kind]
            if cite.label not in known:
                problems.append(f"{name}:{cite.line}: {cite.doc} has no heading (or row) for {_describe(cite)}")
    return problems


# ---- the repository


def test_src_citations_resolve():
    sources = list(SRC.rglob("*.py"))
    assert len(sources) > 20, f"no sources found under {SRC}"
    problems = check_sources(ROOT, sources)
    assert not problems, "broken citations of repository documents:\n" + "\n".join(problems)


def test_src_cites_method_notes():
    """The scanner sees the citations it is meant to check (guards against a regex that matches nothing)."""
    cites = [c for path in SRC.rglob("*.py") for c in find_citations(path.read_text(encoding="utf-8"))]
    docs = {c.doc for c in cites}
    assert {"docs/method/reference_method.md", "docs/method/eg3d.md"} <= docs
    assert len(cites) > 100


def test_method_notes_have_intro_and_numbered_sections():
    expected = {
        "reference_method.md": ({"0", "0.1", "1", "5.2", "7.10", "8", "9"}, {"A", "B"}, set()),
        "eg3d.md": ({"1", "1.3", "3.11", "3.11.6", "4.3", "5.4", "6", "7", "7.15"}, set(), set(map(str, range(1, 16)))),
    }
    for name, (sections, appendices, quirks) in expected.items():
        text = (ROOT / "docs" / "method" / name).read_text(encoding="utf-8")
        found = parse_headings(text)
        assert sections <= found.sections and appendices <= found.appendices and quirks <= found.quirks, name
        assert "stable" in text.split("\n## ")[0], f"{name}: the intro should say section numbers are stable"


# ---- the scanner itself

NOTES = """# Notes

## 1. One

### 1.2 Two

#### 3.11.4 Deep

```text
## 9. Inside a fence, not a heading
```

## Appendix A. Table

| # | topic |
|---|---|
| 8 | eight |
| 11 | eleven |

## 7. Quirks

### 7.2 Quirk 2: averaged
"""


def _scan(tmp_path: Path, source: str) -> list[str]:
    (tmp_path / "docs" / "method").mkdir(parents=True, exist_ok=True)
    (tmp_path / "docs" / "method" / "notes.md").write_text(NOTES, encoding="utf-8")
    (tmp_path / "docs" / "eg3d.md").write_text("# Implementation notes\n", encoding="utf-8")
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / "src" / "mod.py"
    path.write_text(source, encoding="utf-8")
    return check_sources(tmp_path, [path])


def test_scanner_accepts_valid_citations(tmp_path):
    source = '''"""See docs/method/notes.md §1.2-1.2, §1, Appendix A rows 8, 11 and docs/method/notes.md
    §3.11.4. Also §1 of ``docs/method/notes.md`` and ``docs/method/notes.md`` §1.2; docs/method/notes.md quirk 2.
    """
    # a comment citing docs/method/notes.md
    # §1.2-§1 and docs/method/notes.md Appendix A.
    '''
    assert _scan(tmp_path, source) == []
    found = {(c.line, c.kind, c.label) for c in find_citations(source)}
    assert {(1, "section", "1.2"), (1, "section", "1"), (1, "rows", "A:11"), (2, "section", "3.11.4"),
            (2, "quirk", "2"), (5, "section", "1.2"), (5, "section", "1"), (5, "appendix", "A")} <= found


def test_scanner_reports_every_broken_citation_with_file_and_line(tmp_path):
    source = "\n".join([
        "x = 1  # docs/method/notes.md §1.3",  # missing subsection
        '"""docs/method/notes.md',
        '    §1.2-1.4 and docs/method/notes.md §9."""',  # range end missing; §9 only inside a code fence
        "# docs/method/notes.md Appendix B, docs/method/notes.md Appendix A rows 8, 12-13",
        "y = 2  # §2.1 of ``docs/method/notes.md``; docs/method/notes.md quirk 4",
        "z = 3  # docs/missing.md, docs/method/gone.md §1, reference_method.md §2, docs/eg3d.md §3",
    ])
    problems = _scan(tmp_path, source)
    expected = [
        "src/mod.py:1: docs/method/notes.md has no heading (or row) for §1.3",
        "src/mod.py:3: docs/method/notes.md has no heading (or row) for §1.4",
        "src/mod.py:3: docs/method/notes.md has no heading (or row) for §9",
        "src/mod.py:4: docs/method/notes.md has no heading (or row) for Appendix B",
        "src/mod.py:4: docs/method/notes.md has no heading (or row) for Appendix A row 12",
        "src/mod.py:4: docs/method/notes.md has no heading (or row) for Appendix A row 13",
        "src/mod.py:5: docs/method/notes.md has no heading (or row) for §2.1",
        "src/mod.py:5: docs/method/notes.md has no heading (or row) for quirk 4",
        "src/mod.py:6: docs/missing.md does not exist",
        "src/mod.py:6: docs/method/gone.md does not exist",
        "src/mod.py:6: 'reference_method.md' is not a docs/method/ path",
        "src/mod.py:6: 'docs/eg3d.md' is not a docs/method/ path",
    ]
    assert sorted(problems) == sorted(expected)


def test_section_headings_need_the_exact_number():
    found = parse_headings("## 5. Five\n### 5.2 Loss\n#### 3.11.4 Deep\n## 6 Six\n### 7.10. Ten\n")
    assert found.sections == {"5", "5.2", "3.11.4", "6", "7.10"}
    assert "3.11" not in found.sections and "7.1" not in found.sections
    assert parse_headings("### 5.2 Loss\n").sections == {"5.2"}  # §5 needs its own heading
