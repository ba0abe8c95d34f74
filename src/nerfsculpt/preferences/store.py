"""A durable SQLite store of ranking questions and the annotators' answers.

Vocabulary (``docs/preferences.md``):

- an **item** is one geometry to judge: which generator (an id and a content hash), which latent
  (seed), how it was sampled (truncation psi and cutoff, noise mode), how it is shown (a view /
  extraction spec) and its kind, ``regular`` or ``anchor`` (a high-quality reference, §3.3 of
  ``docs/method/reference_method.md``);
- a **question** shows 2-6 items of one **study** in a fixed order (slots 0..k-1);
- an **answer** is one annotator's verdict on a question: best and worst item, optionally a full
  ranking best -> worst, or "can't decide"; with a timestamp and the UI version.

Durability: WAL journal, ``synchronous=FULL``, one ``BEGIN IMMEDIATE`` transaction per write, so
an answer is on disk when :meth:`PreferenceStore.record_answer` returns. Writes are idempotent:
recording the same answer twice returns the first one. Undoing retracts an answer (it stays in the
database with a ``retracted`` time) instead of deleting it. A file that is not a nerfsculpt database
is refused before anything is written to it; :func:`open_or_create` makes a new database appear only
once the writes into it have succeeded.

Example::

    store = PreferenceStore("prefs.sqlite")
    study = store.create_study("pilot", overlap=2)
    q = store.add_question(study, [Item("synthetic", "ab12...", seed=s) for s in (1, 2, 3)])
    store.record_answer(q, "alice", best=store.question(q).item_ids[2], worst=store.question(q).item_ids[0])
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nerfsculpt.atomic import temporary_path
from nerfsculpt.errors import NerfsculptError

SCHEMA_VERSION = 1
"""Current schema; databases of older versions are migrated when opened (``_MIGRATIONS``)."""

MIN_ITEMS, MAX_ITEMS = 2, 6
"""Number of items a question may hold."""

ITEM_KINDS = ("regular", "anchor")
STUDY_KINDS = ("ranking", "ab")
"""``ranking``: pick best and worst of 2-6 items; ``ab``: a user study, left / right / no preference."""

MAX_NAME = 200
"""Longest annotator or study name accepted."""


class PreferenceError(NerfsculptError, ValueError):
    """Base class of the store's errors; the message says what to do."""


class NotFoundError(PreferenceError):
    """A study, question or item that does not exist."""


class InvalidAnswerError(PreferenceError):
    """An answer that contradicts its question (item not in it, best == worst, ...)."""


class ConflictError(PreferenceError):
    """A write that clashes with what is stored (a different answer already recorded, a full question)."""


@dataclass(frozen=True)
class Item:
    """One geometry to judge."""

    generator: str
    """Generator id: a built-in name (``synthetic``) or the checkpoint's file name."""
    generator_hash: str = ""
    """Content hash of the generator's weights (``generator.builtin.generator_fingerprint``); "" if unknown."""
    seed: int = 0
    """Latent seed: ``z = RandomState(seed).randn(1, z_dim)``."""
    psi: float = 1.0
    """Truncation psi."""
    cutoff: int | None = None
    """Truncation cutoff (number of w layers truncated); None = all."""
    noise_mode: str = "const"
    """Synthesis noise mode."""
    view: str = "canonical"
    """Camera / extraction spec of what is shown (free text, e.g. ``canonical`` or a bank's render set)."""
    kind: str = "regular"
    """``regular`` or ``anchor`` (a high-quality reference item)."""

    def __post_init__(self) -> None:
        if self.kind not in ITEM_KINDS:
            raise PreferenceError(f"item kind must be one of {ITEM_KINDS}, got {self.kind!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise PreferenceError(f"seed must be an int in [0, 2^32), got {self.seed!r}")
        if not (isinstance(self.psi, int | float) and math.isfinite(self.psi)):
            raise PreferenceError(f"psi must be a finite number, got {self.psi!r}")
        if self.cutoff is not None and not (isinstance(self.cutoff, int) and self.cutoff >= 0):
            raise PreferenceError(f"cutoff must be None or a non-negative int, got {self.cutoff!r}")
        if not self.generator:
            raise PreferenceError("item needs a generator id")


@dataclass(frozen=True)
class Question:
    """A question: its items in display order."""

    id: int
    study: str
    item_ids: tuple[int, ...]
    items: tuple[Item, ...]
    repeat_of: int | None = None
    """Id of the question this one repeats (self-consistency checks), else None."""


@dataclass(frozen=True)
class Answer:
    """One annotator's verdict on one question (item ids, not slots)."""

    id: int
    question_id: int
    annotator: str
    best: int | None
    worst: int | None
    ranking: tuple[int, ...] | None = None
    """All the question's item ids, best -> worst, when the annotator ranked fully."""
    cant_decide: bool = False
    created: float = 0.0
    """Unix time the answer was recorded."""
    ui_version: str = ""
    retracted: float | None = None
    """Unix time the answer was undone, else None."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (e.g. the position shown in an A/B study)."""

    def same_verdict(self, other: Answer) -> bool:
        return (self.best, self.worst, self.ranking, self.cant_decide) == (
            other.best, other.worst, other.ranking, other.cant_decide)


_SCHEMA_V1 = """
CREATE TABLE studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    overlap INTEGER NOT NULL,
    created REAL NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    generator TEXT NOT NULL,
    generator_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    psi REAL NOT NULL,
    cutoff INTEGER,
    noise_mode TEXT NOT NULL,
    view TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE UNIQUE INDEX items_unique ON items (generator, generator_hash, seed, psi, IFNULL(cutoff, -1), noise_mode,
                                           view, kind);
CREATE TABLE questions (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    repeat_of INTEGER REFERENCES questions(id),
    created REAL NOT NULL
);
CREATE INDEX questions_study ON questions (study_id);
CREATE TABLE question_items (
    question_id INTEGER NOT NULL REFERENCES questions(id),
    slot INTEGER NOT NULL,
    item_id INTEGER NOT NULL REFERENCES items(id),
    PRIMARY KEY (question_id, slot)
);
CREATE TABLE answers (
    id INTEGER PRIMARY KEY,
    question_id INTEGER NOT NULL REFERENCES questions(id),
    annotator TEXT NOT NULL,
    best INTEGER REFERENCES items(id),
    worst INTEGER REFERENCES items(id),
    ranking TEXT,
    cant_decide INTEGER NOT NULL,
    created REAL NOT NULL,
    ui_version TEXT NOT NULL,
    retracted REAL,
    extra TEXT NOT NULL
);
CREATE UNIQUE INDEX answers_active ON answers (question_id, annotator) WHERE retracted IS NULL;
CREATE INDEX answers_annotator ON answers (annotator);
CREATE INDEX answers_question ON answers (question_id);
"""

_MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1,)
"""``_MIGRATIONS[v]`` takes a database from schema version v to v + 1 (version 0 = empty)."""


class PreferenceStore:
    """Questions and answers in one SQLite file; safe to share between threads.

    ``create=False`` refuses to create a missing database (the web app and the readers use it, so
    a typo in ``--db`` does not silently start an empty study).
    """

    def __init__(self, path: str | Path, create: bool = True, timeout: float = 30.0) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(f"no preference database at {self.path}; create one with `nerfsculpt label new` "
                                    f"or `nerfsculpt prefs import`")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0  # nesting depth of transaction()
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            self._refuse_other_files()
        except PreferenceError:
            self._db.close()
            raise
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # --------------------------------------------------------------------------------------------
    # plumbing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on any error.

        Nested uses join the outer transaction, so ``with store.transaction(): ...`` makes a batch
        of writes (an import) all-or-nothing.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @property
    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0][0]

    def _refuse_other_files(self) -> None:
        """Raise PreferenceError, before anything is written, unless the file is empty or a nerfsculpt database."""
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.OperationalError:  # locked or unreadable: not a question of format
            raise
        except sqlite3.DatabaseError as error:  # not an SQLite file, or a damaged one
            reason = f"SQLite: {error}"
        else:
            if version or not tables:  # ours (schema version >= 1), or empty
                return
            reason = "an SQLite database of another program"
        raise PreferenceError(f"{self.path} is not a nerfsculpt preference database ({reason}); check the path, "
                              f"or create one with `nerfsculpt label new` or `nerfsculpt prefs import`")

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise PreferenceError(f"{self.path} has schema version {version}, newer than this nerfsculpt's "
                                  f"{SCHEMA_VERSION}; upgrade nerfsculpt to open it")
        for target in range(version, SCHEMA_VERSION):
            with self.transaction() as db:
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target + 1}")

    # --------------------------------------------------------------------------------------------
    # studies, items, questions

    def create_study(self, name: str, kind: str = "ranking", overlap: int = 1,
                     config: dict[str, Any] | None = None, created: float | None = None) -> str:
        """Create a study (error if the name exists); returns its name.

        ``overlap``: how many different annotators answer each question (multi-annotator scheduling).
        ``created``: Unix time (default now; importers pass the original).
        """
        check_name(name, "study name")
        if kind not in STUDY_KINDS:
            raise PreferenceError(f"study kind must be one of {STUDY_KINDS}, got {kind!r}")
        if not (isinstance(overlap, int) and overlap >= 1):
            raise PreferenceError(f"overlap must be a positive int, got {overlap!r}")
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM studies WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"study {name!r} already exists in {self.path}; pick another name")
            db.execute("INSERT INTO studies (name, kind, overlap, created, config) VALUES (?, ?, ?, ?, ?)",
                       (name, kind, overlap, time.time() if created is None else float(created),
                        json.dumps(config or {}, sort_keys=True)))
        return name

    def studies(self) -> list[dict[str, Any]]:
        """Every study: name, kind, overlap, created, config and question/answer counts."""
        rows = self._query(
            "SELECT s.name, s.kind, s.overlap, s.created, s.config, "
            "(SELECT COUNT(*) FROM questions q WHERE q.study_id = s.id), "
            "(SELECT COUNT(*) FROM answers a JOIN questions q ON a.question_id = q.id "
            " WHERE q.study_id = s.id AND a.retracted IS NULL) FROM studies s ORDER BY s.id")
        return [dict(name=r[0], kind=r[1], overlap=r[2], created=r[3], config=json.loads(r[4]), questions=r[5],
                     answers=r[6]) for r in rows]

    def study(self, name: str) -> dict[str, Any]:
        for s in self.studies():
            if s["name"] == name:
                return s
        known = ", ".join(s["name"] for s in self.studies()) or "none"
        raise NotFoundError(f"no study {name!r} in {self.path} (studies: {known})")

    def choose_study(self, name: str | None) -> str:
        """``name`` if given (it must exist), else the database's only study; PreferenceError otherwise."""
        if name is not None:
            return self.study(name)["name"]
        names = [s["name"] for s in self.studies()]
        if len(names) != 1:
            raise PreferenceError(f"{self.path} holds {len(names)} studies ({', '.join(names) or 'none'}); "
                                  f"choose one with --study")
        return names[0]

    def _overlap(self, name: str) -> int:
        """The study's overlap, with one indexed lookup (``study`` also counts questions and answers)."""
        rows = self._query("SELECT overlap FROM studies WHERE name = ?", (name,))
        if not rows:
            self.study(name)  # raises NotFoundError listing the studies
        return rows[0][0]

    def _study_id(self, db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT id FROM studies WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no study {name!r} in {self.path}")
        return row[0]

    def _item_id(self, db: sqlite3.Connection, item: Item) -> int:
        key = (item.generator, item.generator_hash, int(item.seed), float(item.psi), item.cutoff, item.noise_mode,
               item.view, item.kind)
        row = db.execute("SELECT id FROM items WHERE generator = ? AND generator_hash = ? AND seed = ? AND psi = ? "
                         "AND IFNULL(cutoff, -1) = IFNULL(?, -1) AND noise_mode = ? AND view = ? AND kind = ?",
                         key).fetchone()
        if row is not None:
            return row[0]
        return db.execute("INSERT INTO items (generator, generator_hash, seed, psi, cutoff, noise_mode, view, kind) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", key).lastrowid

    def add_question(self, study: str, items: Sequence[Item], repeat_of: int | None = None) -> int:
        """Add a question showing ``items`` in this order; returns its id."""
        return self.add_questions(study, [items], [repeat_of])[0]

    def add_questions(self, study: str, questions: Sequence[Sequence[Item]],
                      repeats: Sequence[int | None] | None = None) -> list[int]:
        """Add many questions in one transaction (all or nothing); returns their ids."""
        repeats = list(repeats) if repeats is not None else [None] * len(questions)
        if len(repeats) != len(questions):
            raise PreferenceError("repeats must have one entry per question")
        for items in questions:
            if not MIN_ITEMS <= len(items) <= MAX_ITEMS:
                raise PreferenceError(f"a question holds {MIN_ITEMS}-{MAX_ITEMS} items, got {len(items)}")
            if len(set(items)) != len(items):
                raise PreferenceError("a question cannot show the same item twice")
            if not all(isinstance(it, Item) for it in items):
                raise PreferenceError("question items must be Item instances")
        ids = []
        now = time.time()
        with self.transaction() as db:
            study_id = self._study_id(db, study)
            for items, repeat_of in zip(questions, repeats, strict=True):
                if repeat_of is not None and not db.execute("SELECT 1 FROM questions WHERE id = ?",
                                                            (repeat_of,)).fetchone():
                    raise NotFoundError(f"repeat_of: no question {repeat_of}")
                qid = db.execute("INSERT INTO questions (study_id, repeat_of, created) VALUES (?, ?, ?)",
                                 (study_id, repeat_of, now)).lastrowid
                db.executemany("INSERT INTO question_items (question_id, slot, item_id) VALUES (?, ?, ?)",
                               [(qid, slot, self._item_id(db, it)) for slot, it in enumerate(items)])
                ids.append(qid)
        return ids

    def question(self, question_id: int) -> Question:
        rows = self._query(
            "SELECT q.id, s.name, q.repeat_of, qi.item_id, i.generator, i.generator_hash, i.seed, i.psi, i.cutoff, "
            "i.noise_mode, i.view, i.kind FROM questions q JOIN studies s ON q.study_id = s.id "
            "JOIN question_items qi ON qi.question_id = q.id JOIN items i ON i.id = qi.item_id "
            "WHERE q.id = ? ORDER BY qi.slot", (question_id,))
        if not rows:
            raise NotFoundError(f"no question {question_id}")
        return Question(id=rows[0][0], study=rows[0][1], repeat_of=rows[0][2], item_ids=tuple(r[3] for r in rows),
                        items=tuple(_item(r[4:]) for r in rows))

    def item(self, item_id: int, study: str | None = None) -> Item:
        """An item by id; with ``study``, only if one of that study's questions shows it."""
        sql = "SELECT generator, generator_hash, seed, psi, cutoff, noise_mode, view, kind FROM items i WHERE i.id = ?"
        args: tuple = (int(item_id),)
        if study is not None:
            sql += (" AND EXISTS (SELECT 1 FROM question_items qi JOIN questions q ON q.id = qi.question_id "
                    "JOIN studies s ON s.id = q.study_id WHERE qi.item_id = i.id AND s.name = ?)")
            args += (study,)
        rows = self._query(sql, args)
        if not rows:
            raise NotFoundError(f"no item {item_id}" + (f" in study {study!r}" if study else ""))
        return _item(rows[0])

    def questions(self, study: str | None = None) -> list[Question]:
        """All questions (of one study), in id order."""
        sql = ("SELECT q.id, s.name, q.repeat_of, qi.item_id, i.generator, i.generator_hash, i.seed, i.psi, "
               "i.cutoff, i.noise_mode, i.view, i.kind FROM questions q JOIN studies s ON q.study_id = s.id "
               "JOIN question_items qi ON qi.question_id = q.id JOIN items i ON i.id = qi.item_id")
        args: tuple = ()
        if study is not None:
            self.study(study)
            sql += " WHERE s.name = ?"
            args = (study,)
        grouped: dict[int, list[tuple]] = {}
        for row in self._query(sql + " ORDER BY q.id, qi.slot", args):
            grouped.setdefault(row[0], []).append(row)
        return [Question(id=qid, study=rows[0][1], repeat_of=rows[0][2], item_ids=tuple(r[3] for r in rows),
                         items=tuple(_item(r[4:]) for r in rows)) for qid, rows in grouped.items()]

    # --------------------------------------------------------------------------------------------
    # answers

    def record_answer(self, question_id: int, annotator: str, best: int | None = None, worst: int | None = None,
                      ranking: Sequence[int] | None = None, cant_decide: bool = False, ui_version: str = "",
                      extra: dict[str, Any] | None = None, created: float | None = None) -> tuple[Answer, bool]:
        """Validate and store one answer, durably; returns ``(answer, newly_recorded)``.

        Item arguments are item ids of the question. A full ``ranking`` (every item, best -> worst)
        implies best and worst. Re-recording the same verdict is a no-op that returns the stored
        answer (``newly_recorded`` False); a different verdict from the same annotator raises
        :class:`ConflictError` (undo first), as does an answer to a question that already has
        ``overlap`` answers from other annotators.
        """
        check_name(annotator, "annotator name")
        ranking_t = tuple(int(i) for i in ranking) if ranking is not None else None
        if ranking_t is not None:
            if best is None:
                best = ranking_t[0]
            if worst is None:
                worst = ranking_t[-1]
        with self.transaction() as db:
            items = self._question_in(db, question_id)
            overlap = db.execute("SELECT s.overlap FROM studies s JOIN questions q ON q.study_id = s.id "
                                 "WHERE q.id = ?", (question_id,)).fetchone()[0]
            if cant_decide:
                if best is not None or worst is not None or ranking_t is not None:
                    raise InvalidAnswerError("a \"can't decide\" answer has no best, worst or ranking")
            else:
                if best is None or worst is None:
                    raise InvalidAnswerError("an answer needs best and worst (or a ranking, or can't decide)")
                for name, value in (("best", best), ("worst", worst)):
                    if value not in items:
                        raise InvalidAnswerError(f"{name} = {value} is not an item of question {question_id} "
                                                 f"(items {list(items)})")
                if best == worst:
                    raise InvalidAnswerError("best and worst must be different items")
                if ranking_t is not None:
                    if sorted(ranking_t) != sorted(items):
                        raise InvalidAnswerError(f"ranking must list every item of question {question_id} once "
                                                 f"(items {list(items)}), got {list(ranking_t)}")
                    if (ranking_t[0], ranking_t[-1]) != (best, worst):
                        raise InvalidAnswerError("ranking must start with best and end with worst")
            answer = Answer(id=0, question_id=question_id, annotator=annotator, best=best, worst=worst,
                            ranking=ranking_t, cant_decide=bool(cant_decide),
                            created=time.time() if created is None else float(created), ui_version=ui_version,
                            extra=dict(extra or {}))
            row = db.execute(_ANSWER_SELECT + " WHERE question_id = ? AND annotator = ? AND retracted IS NULL",
                             (question_id, annotator)).fetchone()
            if row is not None:
                stored = _answer(row)
                if stored.same_verdict(answer):
                    return stored, False
                raise ConflictError(f"{annotator} already answered question {question_id} differently; "
                                    f"undo that answer first")
            others = db.execute("SELECT COUNT(*) FROM answers WHERE question_id = ? AND retracted IS NULL",
                                (question_id,)).fetchone()[0]
            if others >= overlap:
                raise ConflictError(f"question {question_id} is finished: it already has {others} answer(s) "
                                    f"(overlap {overlap})")
            answer_id = db.execute(
                "INSERT INTO answers (question_id, annotator, best, worst, ranking, cant_decide, created, ui_version, "
                "retracted, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (question_id, annotator, best, worst, json.dumps(list(ranking_t)) if ranking_t else None,
                 int(answer.cant_decide), answer.created, ui_version, json.dumps(answer.extra, sort_keys=True)),
            ).lastrowid
        return Answer(**{**asdict(answer), "id": answer_id, "ranking": ranking_t}), True

    def _question_in(self, db: sqlite3.Connection, question_id: int) -> list[int]:
        rows = db.execute("SELECT item_id FROM question_items WHERE question_id = ? ORDER BY slot",
                          (int(question_id),)).fetchall()
        if not rows:
            raise NotFoundError(f"no question {question_id}")
        return [r[0] for r in rows]

    def undo_answer(self, question_id: int, annotator: str) -> Answer:
        """Retract the annotator's active answer to a question (kept in the database, marked retracted)."""
        with self.transaction() as db:
            row = db.execute(_ANSWER_SELECT + " WHERE question_id = ? AND annotator = ? AND retracted IS NULL",
                             (question_id, annotator)).fetchone()
            if row is None:
                raise NotFoundError(f"{annotator} has no answer to question {question_id} to undo")
            now = time.time()
            self.retract(row[0], now)
        return Answer(**{**asdict(_answer(row)), "retracted": now})

    def retract(self, answer_id: int, when: float | None = None) -> None:
        """Mark an active answer retracted at ``when`` (default now); importers use it to restore history."""
        with self.transaction() as db:
            updated = db.execute("UPDATE answers SET retracted = ? WHERE id = ? AND retracted IS NULL",
                                 (time.time() if when is None else float(when), int(answer_id))).rowcount
            if updated != 1:
                raise NotFoundError(f"no active answer {answer_id} to retract")

    def last_answer(self, annotator: str, study: str | None = None) -> Answer | None:
        """The annotator's most recent active answer (in a study), or None."""
        sql = _ANSWER_SELECT + " JOIN questions q ON q.id = a.question_id JOIN studies s ON s.id = q.study_id " \
              "WHERE a.annotator = ? AND a.retracted IS NULL"
        args: list[Any] = [annotator]
        if study is not None:
            sql += " AND s.name = ?"
            args.append(study)
        rows = self._query(sql + " ORDER BY a.id DESC LIMIT 1", args)
        return _answer(rows[0]) if rows else None

    def answers(self, study: str | None = None, annotator: str | None = None,
                include_retracted: bool = False) -> list[Answer]:
        """Answers in id order, filtered by study and annotator; retracted ones only if asked."""
        sql = _ANSWER_SELECT + " JOIN questions q ON q.id = a.question_id JOIN studies s ON s.id = q.study_id WHERE 1"
        args: list[Any] = []
        if study is not None:
            self.study(study)
            sql += " AND s.name = ?"
            args.append(study)
        if annotator is not None:
            sql += " AND a.annotator = ?"
            args.append(annotator)
        if not include_retracted:
            sql += " AND a.retracted IS NULL"
        return [_answer(r) for r in self._query(sql + " ORDER BY a.id", args)]

    def next_question(self, study: str, annotator: str, exclude: Sequence[int] = ()) -> Question | None:
        """The next question for an annotator: the lowest-id question of the study that they have not
        answered, that has fewer than ``overlap`` answers and is not in ``exclude`` (skipped); None
        when there is none left."""
        overlap = self._overlap(study)
        skip = sorted({int(q) for q in exclude})
        rows = self._query(
            "SELECT q.id FROM questions q JOIN studies s ON s.id = q.study_id WHERE s.name = ? "
            "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.question_id = q.id AND a.annotator = ? "
            "                AND a.retracted IS NULL) "
            "AND (SELECT COUNT(*) FROM answers a WHERE a.question_id = q.id AND a.retracted IS NULL) < ? "
            f"AND q.id NOT IN ({','.join('?' * len(skip))}) ORDER BY q.id LIMIT 1",
            (study, annotator, overlap, *skip))
        return self.question(rows[0][0]) if rows else None

    def is_open(self, question_id: int, annotator: str) -> bool:
        """True if the annotator may answer the question now (not answered by them, not full)."""
        rows = self._query(
            "SELECT s.overlap, (SELECT COUNT(*) FROM answers a WHERE a.question_id = q.id AND a.retracted IS NULL), "
            "(SELECT COUNT(*) FROM answers a WHERE a.question_id = q.id AND a.annotator = ? AND a.retracted IS NULL) "
            "FROM questions q JOIN studies s ON s.id = q.study_id WHERE q.id = ?", (annotator, int(question_id)))
        if not rows:
            raise NotFoundError(f"no question {question_id}")
        overlap, answers, mine = rows[0]
        return mine == 0 and answers < overlap

    def progress(self, study: str, annotator: str) -> dict[str, int]:
        """``answered`` by this annotator and ``available`` to them (answered + still open to them)."""
        overlap = self._overlap(study)
        answered = self._query(
            "SELECT COUNT(*) FROM answers a JOIN questions q ON q.id = a.question_id JOIN studies s "
            "ON s.id = q.study_id WHERE s.name = ? AND a.annotator = ? AND a.retracted IS NULL",
            (study, annotator))[0][0]
        open_ = self._query(
            "SELECT COUNT(*) FROM questions q JOIN studies s ON s.id = q.study_id WHERE s.name = ? "
            "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.question_id = q.id AND a.annotator = ? "
            "                AND a.retracted IS NULL) "
            "AND (SELECT COUNT(*) FROM answers a WHERE a.question_id = q.id AND a.retracted IS NULL) < ?",
            (study, annotator, overlap))[0][0]
        return {"answered": answered, "available": answered + open_}

    def annotators(self, study: str | None = None) -> list[str]:
        return sorted({a.annotator for a in self.answers(study=study)})


@contextmanager
def open_or_create(path: str | Path) -> Iterator[PreferenceStore]:
    """The database at ``path`` to write to; a missing one is built beside it and appears only if the block succeeds.

    So a failed import or study creation leaves no database behind, not even an empty one. An existing
    database is opened in place (make the block's writes all-or-nothing with ``store.transaction()``).
    """
    path = Path(path)
    if path.exists():
        with PreferenceStore(path, create=False) as store:
            yield store
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with PreferenceStore(tmp) as store:
            store.path = path  # messages name the database being made
            yield store
        if path.exists():
            raise ConflictError(f"{path} was created by another process meanwhile; run the command again")
        tmp.rename(path)
    finally:
        for leftover in (tmp, *(tmp.with_name(tmp.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
            leftover.unlink(missing_ok=True)


_ANSWER_SELECT = ("SELECT a.id, a.question_id, a.annotator, a.best, a.worst, a.ranking, a.cant_decide, a.created, "
                  "a.ui_version, a.retracted, a.extra FROM answers a")


def _answer(row: tuple) -> Answer:
    return Answer(id=row[0], question_id=row[1], annotator=row[2], best=row[3], worst=row[4],
                  ranking=tuple(json.loads(row[5])) if row[5] else None, cant_decide=bool(row[6]), created=row[7],
                  ui_version=row[8], retracted=row[9], extra=json.loads(row[10]))


def _item(row: Sequence[Any]) -> Item:
    generator, generator_hash, seed, psi, cutoff, noise_mode, view, kind = row
    return Item(generator=generator, generator_hash=generator_hash, seed=int(seed), psi=float(psi), cutoff=cutoff,
                noise_mode=noise_mode, view=view, kind=kind)


def check_name(name: object, what: str) -> None:
    """Raise PreferenceError unless ``name`` is a usable study or annotator name."""
    if not (isinstance(name, str) and name.strip() and len(name) <= MAX_NAME and name == name.strip()
            and name.isprintable()):
        raise PreferenceError(f"{what} must be 1-{MAX_NAME} printable characters without surrounding spaces, "
                              f"got {name!r}")
