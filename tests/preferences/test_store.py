"""The SQLite preference store: schema, validation, idempotency, undo, scheduling, durability."""

import sqlite3
import threading

import pytest

from nerfsculpt.preferences.store import (
    SCHEMA_VERSION,
    ConflictError,
    InvalidAnswerError,
    Item,
    NotFoundError,
    PreferenceError,
    PreferenceStore,
    open_or_create,
)


def _items(*seeds, **kw):
    return [Item("synthetic", "abc", seed=s, **kw) for s in seeds]


@pytest.fixture
def store(tmp_path):
    with PreferenceStore(tmp_path / "prefs.sqlite") as s:
        yield s


def test_schema_wal_and_version(store, tmp_path):
    assert store.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(tmp_path / "prefs.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    sqlite3.connect(path).execute("PRAGMA user_version = 99")
    with pytest.raises(PreferenceError, match="newer"):
        PreferenceStore(path)


def test_missing_database_is_not_created_when_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match="label new"):
        PreferenceStore(tmp_path / "typo.sqlite", create=False)
    assert not (tmp_path / "typo.sqlite").exists()


@pytest.mark.parametrize("create", [True, False])
def test_other_files_are_refused_unchanged(tmp_path, create):
    text = tmp_path / "notes.sqlite"
    text.write_text("hello")
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    for path in (text, foreign):
        before = path.read_bytes()
        with pytest.raises(PreferenceError, match=f"{path.name} is not a nerfsculpt preference database"):
            PreferenceStore(path, create=create)
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite", "other.sqlite"]


def test_open_or_create_makes_the_file_only_on_success(tmp_path):
    path = tmp_path / "new.sqlite"
    with pytest.raises(ConflictError, match="new.sqlite"):
        with open_or_create(path) as store:
            store.create_study("s")
            store.create_study("s")
    assert list(tmp_path.iterdir()) == []
    with open_or_create(path) as store:
        store.create_study("s")
    assert [p.name for p in tmp_path.iterdir()] == ["new.sqlite"]
    with pytest.raises(RuntimeError):  # an existing database is opened in place, and kept
        with open_or_create(path) as store:
            raise RuntimeError("boom")
    with PreferenceStore(path, create=False) as store:
        assert [s["name"] for s in store.studies()] == ["s"]


def test_questions_round_trip_and_items_are_shared(store):
    store.create_study("s")
    q1 = store.add_question("s", _items(1, 2, 3))
    q2 = store.add_question("s", _items(3, 4))
    a, b = store.question(q1), store.question(q2)
    assert [it.seed for it in a.items] == [1, 2, 3] and a.study == "s"
    assert a.item_ids[2] == b.item_ids[0], "the same item is stored once"
    assert [q.id for q in store.questions("s")] == [q1, q2]
    assert Item("synthetic", "abc", seed=3, psi=0.5) not in a.items  # psi is part of the identity


def test_bad_questions_change_nothing(store):
    store.create_study("s")
    with pytest.raises(PreferenceError, match="2-6 items"):
        store.add_question("s", _items(1))
    with pytest.raises(PreferenceError, match="2-6 items"):
        store.add_question("s", _items(*range(7)))
    with pytest.raises(PreferenceError, match="twice"):
        store.add_question("s", _items(1, 1))
    with pytest.raises(NotFoundError):
        store.add_question("nope", _items(1, 2))
    with pytest.raises(PreferenceError, match="2-6"):  # all-or-nothing batch
        store.add_questions("s", [_items(1, 2), _items(3)])
    assert store.questions("s") == []
    with pytest.raises(PreferenceError, match="kind"):
        Item("g", seed=1, kind="weird")
    with pytest.raises(PreferenceError, match="seed"):
        Item("g", seed=-1)
    with pytest.raises(ConflictError):
        store.create_study("s")


def test_answers_are_validated(store):
    store.create_study("s")
    q = store.add_question("s", _items(1, 2, 3))
    ids = store.question(q).item_ids
    other = store.question(store.add_question("s", _items(8, 9))).item_ids
    cases = [
        (dict(best=ids[0], worst=ids[0]), InvalidAnswerError, "different"),
        (dict(best=ids[0], worst=other[0]), InvalidAnswerError, "not an item"),
        (dict(best=ids[0]), InvalidAnswerError, "needs best and worst"),
        (dict(best=ids[0], worst=ids[1], cant_decide=True), InvalidAnswerError, "can't decide"),
        (dict(ranking=[ids[0], ids[1]]), InvalidAnswerError, "every item"),
        (dict(ranking=[ids[0], ids[1], ids[2]], best=ids[1]), InvalidAnswerError, "start with best"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            store.record_answer(q, "ann", **kwargs)
    with pytest.raises(NotFoundError):
        store.record_answer(12345, "ann", best=ids[0], worst=ids[1])
    with pytest.raises(PreferenceError, match="annotator"):
        store.record_answer(q, " ", best=ids[0], worst=ids[1])
    assert store.answers(include_retracted=True) == []


def test_idempotent_conflict_undo(store):
    store.create_study("s")
    q = store.add_question("s", _items(1, 2, 3))
    ids = store.question(q).item_ids
    first, new = store.record_answer(q, "ann", best=ids[2], worst=ids[0])
    assert new and first.best == ids[2]
    again, new = store.record_answer(q, "ann", best=ids[2], worst=ids[0])
    assert not new and again.id == first.id
    with pytest.raises(ConflictError, match="undo"):
        store.record_answer(q, "ann", best=ids[1], worst=ids[0])
    store.undo_answer(q, "ann")
    assert store.answers() == [] and len(store.answers(include_retracted=True)) == 1
    changed, new = store.record_answer(q, "ann", ranking=[ids[1], ids[2], ids[0]])
    assert new and (changed.best, changed.worst) == (ids[1], ids[0])
    history = store.answers(include_retracted=True)
    assert [a.retracted is None for a in history] == [False, True]
    with pytest.raises(NotFoundError):
        store.undo_answer(q, "bob")


def test_overlap_scheduling_and_finished_questions(store):
    store.create_study("s", overlap=2)
    qs = [store.add_question("s", _items(2 * k, 2 * k + 1)) for k in range(3)]

    def answer(annotator):
        q = store.next_question("s", annotator)
        store.record_answer(q.id, annotator, best=q.item_ids[0], worst=q.item_ids[1])
        return q.id

    assert [answer("a") for _ in range(3)] == qs
    assert store.next_question("s", "a") is None
    assert answer("b") == qs[0]
    assert store.next_question("s", "c").id == qs[1], "question 0 already has 2 answers"
    ids = store.question(qs[0]).item_ids
    with pytest.raises(ConflictError, match="finished"):
        store.record_answer(qs[0], "c", best=ids[0], worst=ids[1])
    assert store.progress("s", "b") == {"answered": 1, "available": 3}
    assert store.progress("s", "c") == {"answered": 0, "available": 2}
    assert store.annotators("s") == ["a", "b"]


def test_answers_survive_reopening_and_concurrent_threads(tmp_path):
    path = tmp_path / "p.sqlite"
    with PreferenceStore(path) as store:
        store.create_study("s", overlap=8)
        qs = [store.add_question("s", _items(2 * k, 2 * k + 1)) for k in range(25)]
        errors = []

        def worker(name):
            try:
                for q in qs:
                    ids = store.question(q).item_ids
                    store.record_answer(q, name, best=ids[1], worst=ids[0])
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(f"t{k}",)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    with PreferenceStore(path, create=False) as store:
        assert len(store.answers("s")) == 200


def test_transaction_is_all_or_nothing(store):
    store.create_study("s")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_question("s", _items(1, 2))
            raise RuntimeError("boom")
    assert store.questions("s") == []
