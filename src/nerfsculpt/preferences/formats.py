"""Import and export of preference data.

Import (each file in one transaction: a bad row changes nothing and the error names the line; a CSV
without questions is refused, so that it does not leave an empty study behind):

- **ranked seeds CSV**, the paper's ``rankedseedsall.csv`` (``docs/method/reference_method.md`` §3.1): an unnamed
  index column and ``rank1`` (winner seed), ``rank2`` (loser seed); one question of two items and
  one best/worst answer per row. The seeds are ``ffhq512-128.pkl`` G_ema samples at psi 1.0,
  cutoff 14, const noise, canonical camera (the defaults of :func:`import_ranked_seeds`).
- **legacy questionnaire CSV** of the reference's labeling app (§3.2): ``index, seed1..seed7,
  completed, n_in_row, rank1..rank7``; ``seedK`` is the image shown at position K (a path ending
  in ``composed_s_<seed>.jpg``, or a bare seed), ``rankK`` the position letter (A = seed1) placed
  at rank K. Completed rows become full rankings; incomplete rows are skipped and counted.
- **JSONL** written by :func:`export_jsonl` (a whole database: studies, questions, answers).

Export: JSONL (everything, round-trips exactly), a pairs CSV (one row per preference pair, with
every field of both items) and the ranked-seeds CSV (best/worst seeds, the paper's format).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nerfsculpt.atomic import write_atomic
from nerfsculpt.preferences.pairs import expand_pairs, ranked_lists
from nerfsculpt.preferences.store import Item, PreferenceError, PreferenceStore

PAPER_GENERATOR = "ffhq512-128.pkl"
"""The checkpoint the paper's seeds refer to (§3.1)."""
PAPER_SAMPLING = {"psi": 1.0, "cutoff": 14, "noise_mode": "const", "view": "canonical"}
"""How the paper's ranked seeds were sampled (§3.1)."""

JSONL_FORMAT = "nerfsculpt-preferences"
JSONL_VERSION = 1


class FormatError(PreferenceError):
    """A file that is not in the expected format; the message names the line."""


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except UnicodeDecodeError as error:
        raise FormatError(f"{path} is not a UTF-8 text CSV ({error})") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        raise FormatError(f"{path} is empty")
    return [h.strip() for h in rows[0]], rows[1:]


def _int(value: str, path: Path, line: int, column: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise FormatError(f"{path}:{line}: {column} must be an integer seed, got {value!r}") from None
    if not 0 <= number < 2**32:
        raise FormatError(f"{path}:{line}: {column} = {number} is not a valid seed (0 <= seed < 2^32)")
    return number


def _item_maker(generator: str, generator_hash: str, psi: float, cutoff: int | None, noise_mode: str,
                view: str) -> Callable[[int], Item]:
    """seed -> Item of one generator sampled one way (every row of a CSV import)."""

    def item(seed: int) -> Item:
        return Item(generator, generator_hash, seed=seed, psi=psi, cutoff=cutoff, noise_mode=noise_mode, view=view)

    return item


def import_ranked_seeds(store: PreferenceStore, path: str | Path, study: str = "paper", annotator: str = "paper",
                        generator: str = PAPER_GENERATOR, generator_hash: str = "", psi: float = 1.0,
                        cutoff: int | None = 14, noise_mode: str = "const", view: str = "canonical") -> int:
    """Import a ranked-seeds CSV (``rank1`` = winner, ``rank2`` = loser) as a new study; returns the row count."""
    path = Path(path)
    header, rows = _read_csv(path)
    if header[1:] != ["rank1", "rank2"] or header[0] not in ("", "index"):
        raise FormatError(f"{path}:1: expected the header ',rank1,rank2' of a ranked-seeds CSV, "
                          f"got {','.join(header)!r}")
    pairs = []
    for line, row in enumerate(rows, start=2):
        if len(row) != 3:
            raise FormatError(f"{path}:{line}: expected 3 columns (index, rank1, rank2), got {len(row)}")
        winner, loser = _int(row[1], path, line, "rank1"), _int(row[2], path, line, "rank2")
        if winner == loser:
            raise FormatError(f"{path}:{line}: winner and loser are the same seed {winner}")
        pairs.append((winner, loser))
    if not pairs:
        raise FormatError(f"no questions in {path}: it has a header and no rows")

    item = _item_maker(generator, generator_hash, psi, cutoff, noise_mode, view)
    source = {"source": path.name, "format": "ranked-seeds"}
    with store.transaction():
        store.create_study(study, kind="ranking", overlap=1, config=source)
        ids = store.add_questions(study, [[item(w), item(l)] for w, l in pairs])
        for qid in ids:
            best, worst = store.question(qid).item_ids
            store.record_answer(qid, annotator, best=best, worst=worst, ui_version="import:ranked-seeds")
    return len(pairs)


_LETTERS = "ABCDEFG"
_SEED_IN_PATH = re.compile(r"composed_s_(\d+)")


def _legacy_seed(cell: str, path: Path, line: int, column: str) -> int:
    cell = cell.strip()
    if cell.isdigit():
        return _int(cell, path, line, column)
    match = _SEED_IN_PATH.search(cell)
    if match is None:
        raise FormatError(f"{path}:{line}: {column} = {cell!r} is neither a seed nor a path ending in "
                          f"composed_s_<seed>.jpg")
    return _int(match.group(1), path, line, column)


def import_legacy_questionnaire(store: PreferenceStore, path: str | Path, study: str, annotator: str = "legacy",
                                generator: str = PAPER_GENERATOR, generator_hash: str = "", psi: float = 1.0,
                                cutoff: int | None = 14, noise_mode: str = "const",
                                view: str = "canonical") -> dict[str, int]:
    """Import the reference app's questionnaire CSV as full rankings; returns ``{"imported", "skipped"}``."""
    path = Path(path)
    header, rows = _read_csv(path)
    expected = ["index", *(f"seed{k}" for k in range(1, 8)), "completed", "n_in_row",
                *(f"rank{k}" for k in range(1, 8))]
    if [h.lower() for h in header] != expected:
        raise FormatError(f"{path}:1: expected the legacy questionnaire header {','.join(expected)!r}, "
                          f"got {','.join(header)!r}")
    rankings, skipped = [], 0
    for line, row in enumerate(rows, start=2):
        if len(row) != len(expected):
            raise FormatError(f"{path}:{line}: expected {len(expected)} columns, got {len(row)}")
        cells = dict(zip(expected, (c.strip() for c in row), strict=True))
        if cells["completed"].lower() not in ("true", "1", "yes"):
            skipped += 1
            continue
        try:
            n = int(cells["n_in_row"])
        except ValueError:
            raise FormatError(f"{path}:{line}: n_in_row must be an integer, got {cells['n_in_row']!r}") from None
        if not 2 <= n <= 6:
            raise FormatError(f"{path}:{line}: n_in_row = {n}; a question holds 2-6 items")
        letters = [cells[f"rank{k}"].upper() for k in range(1, n + 1)]
        if sorted(letters) != list(_LETTERS[:n]):
            raise FormatError(f"{path}:{line}: rank1..rank{n} must be the letters {', '.join(_LETTERS[:n])} "
                              f"in some order, got {letters}")
        seeds = [_legacy_seed(cells[f"seed{k}"], path, line, f"seed{k}") for k in range(1, n + 1)]
        if len(set(seeds)) != n:
            raise FormatError(f"{path}:{line}: a question shows the same seed twice ({seeds})")
        rankings.append((seeds, [_LETTERS.index(letter) for letter in letters]))
    if not rankings:
        raise FormatError(f"no questions in {path} ({skipped} incomplete rows skipped)")

    item = _item_maker(generator, generator_hash, psi, cutoff, noise_mode, view)
    with store.transaction():
        store.create_study(study, kind="ranking", overlap=1, config={"source": path.name, "format": "legacy"})
        ids = store.add_questions(study, [[item(s) for s in seeds] for seeds, _ in rankings])
        for qid, (_, order) in zip(ids, rankings, strict=True):
            item_ids = store.question(qid).item_ids
            store.record_answer(qid, annotator, ranking=[item_ids[slot] for slot in order],
                                ui_version="import:legacy-questionnaire")
    return {"imported": len(rankings), "skipped": skipped}


# ------------------------------------------------------------------------------------------------
# JSONL


def export_jsonl(store: PreferenceStore, path: str | Path, include_retracted: bool = True) -> int:
    """Write the whole database as JSON lines (header, studies, questions, answers); returns the line count.

    Answers refer to items by slot (position in the question), so the file is independent of the
    database's internal ids and imports into any database.
    """
    lines = [{"format": JSONL_FORMAT, "version": JSONL_VERSION}]
    for study in store.studies():
        lines.append({"type": "study", **{k: study[k] for k in ("name", "kind", "overlap", "created", "config")}})
    slots: dict[int, dict[int, int]] = {}
    for q in store.questions():
        slots[q.id] = {item_id: slot for slot, item_id in enumerate(q.item_ids)}
        lines.append({"type": "question", "id": q.id, "study": q.study, "repeat_of": q.repeat_of,
                      "items": [asdict(it) for it in q.items]})
    for a in store.answers(include_retracted=include_retracted):
        slot = slots[a.question_id]
        lines.append({"type": "answer", "question": a.question_id, "annotator": a.annotator,
                      "best": None if a.best is None else slot[a.best],
                      "worst": None if a.worst is None else slot[a.worst],
                      "ranking": None if a.ranking is None else [slot[i] for i in a.ranking],
                      "cant_decide": a.cant_decide, "created": a.created, "ui_version": a.ui_version,
                      "retracted": a.retracted, "extra": a.extra})
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    write_atomic(path, text.encode())
    return len(lines)


def import_jsonl(store: PreferenceStore, path: str | Path) -> dict[str, int]:
    """Import a file of :func:`export_jsonl` (studies must not exist yet); returns counts per record type."""
    path = Path(path)
    records = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((line_no, json.loads(line)))
        except json.JSONDecodeError as error:
            raise FormatError(f"{path}:{line_no}: not JSON ({error.msg})") from None
    if not records or records[0][1].get("format") != JSONL_FORMAT:
        raise FormatError(f"{path}:1: not a nerfsculpt preferences JSONL file (no {JSONL_FORMAT!r} header)")
    if records[0][1].get("version") != JSONL_VERSION:
        raise FormatError(f"{path}:1: version {records[0][1].get('version')} is not supported "
                          f"(this nerfsculpt reads {JSONL_VERSION})")
    counts = {"study": 0, "question": 0, "answer": 0}
    new_id: dict[int, int] = {}
    with store.transaction():
        for line_no, record in records[1:]:
            kind = record.get("type")
            try:
                if kind == "study":
                    store.create_study(record["name"], record["kind"], record["overlap"], record["config"],
                                       record["created"])
                elif kind == "question":
                    repeat = record["repeat_of"]
                    new_id[record["id"]] = store.add_question(record["study"], [Item(**it) for it in record["items"]],
                                                              new_id[repeat] if repeat is not None else None)
                elif kind == "answer":
                    _import_answer(store, record, new_id)
                else:
                    raise FormatError(f"unknown record type {kind!r}")
            except (KeyError, TypeError) as error:
                raise FormatError(f"{path}:{line_no}: malformed {kind} record ({error!r})") from None
            except PreferenceError as error:
                raise FormatError(f"{path}:{line_no}: {error}") from None
            counts[kind] += 1
    return counts


def _import_answer(store: PreferenceStore, record: dict[str, Any], new_id: dict[int, int]) -> None:
    qid = new_id[record["question"]]
    item_ids = store.question(qid).item_ids

    def pick(slot: int | None) -> int | None:
        return None if slot is None else item_ids[slot]

    ranking = record["ranking"]
    answer, _ = store.record_answer(qid, record["annotator"], best=pick(record["best"]), worst=pick(record["worst"]),
                                    ranking=None if ranking is None else [item_ids[s] for s in ranking],
                                    cant_decide=record["cant_decide"], ui_version=record["ui_version"],
                                    extra=record["extra"], created=record["created"])
    if record["retracted"] is not None:
        store.retract(answer.id, record["retracted"])


# ------------------------------------------------------------------------------------------------
# CSV


PAIR_COLUMNS = ("study", "question", "annotator", *(f"{side}_{field}" for side in ("winner", "loser") for field in
                                                    ("seed", "psi", "cutoff", "noise_mode", "view", "kind",
                                                     "generator", "generator_hash")))


def export_pairs_csv(store: PreferenceStore, path: str | Path, mode: str = "best_worst",
                     study: str | None = None) -> int:
    """One row per preference pair (``pairs.ranked_lists`` with ``mode``), every item field; returns the pair count."""
    answers = store.answers(study=study)
    study_of = {q.id: q.study for q in store.questions(study)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PAIR_COLUMNS)
    pairs = expand_pairs(ranked_lists(store, answers, mode))
    for p in pairs:
        row: list[Any] = [study_of[p.question_id], p.question_id, p.annotator]
        for it in (p.winner, p.loser):
            row += [it.seed, it.psi, "" if it.cutoff is None else it.cutoff, it.noise_mode, it.view, it.kind,
                    it.generator, it.generator_hash]
        writer.writerow(row)
    write_atomic(path, out.getvalue().encode())
    return len(pairs)


def export_ranked_seeds(store: PreferenceStore, path: str | Path, study: str) -> int:
    """The paper's format: ``,rank1,rank2`` = best and worst seed of every decided answer of a study."""
    out = io.StringIO()
    out.write(",rank1,rank2\n")
    lists = ranked_lists(store, store.answers(study=study), "best_worst")
    for k, ranked in enumerate(lists):
        out.write(f"{k},{ranked.items[0].seed},{ranked.items[-1].seed}\n")
    write_atomic(path, out.getvalue().encode())
    return len(lists)


def detect_format(path: str | Path) -> str:
    """``ranked-seeds``, ``legacy`` or ``jsonl`` from a file's first line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path} is not a UTF-8 text file") from None
    if first.startswith("{"):
        return "jsonl"
    header = [h.strip().lower() for h in first.split(",")]
    if header[1:] == ["rank1", "rank2"]:
        return "ranked-seeds"
    if header[:2] == ["index", "seed1"]:
        return "legacy"
    raise FormatError(f"{path}:1: unrecognised header {first[:80]!r}; expected a ranked-seeds CSV (',rank1,rank2'), "
                      f"a legacy questionnaire CSV ('index,seed1,...') or a nerfsculpt JSONL export")

