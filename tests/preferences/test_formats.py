"""Import and export: the paper's CSV, the legacy questionnaire, JSONL and pair CSVs."""

import csv
import json
from pathlib import Path

import pytest

from nerfsculpt.preferences.formats import (
    FormatError,
    detect_format,
    export_jsonl,
    export_pairs_csv,
    export_ranked_seeds,
    import_jsonl,
    import_legacy_questionnaire,
    import_ranked_seeds,
)
from nerfsculpt.preferences.store import Item, PreferenceStore

PAPER_CSV = Path(__file__).resolve().parents[1] / "data" / "rankedseedsall.csv"  # the paper's data, §3.1

LEGACY = """index,seed1,seed2,seed3,seed4,seed5,seed6,seed7,completed,n_in_row,rank1,rank2,rank3,rank4,rank5,rank6,rank7
0,/x/composed_s_20001.jpg,/x/composed_s_20002.jpg,/x/composed_s_20003.jpg,,,,,TRUE,3,C,A,B,,,,
1,30001,30002,,,,,,FALSE,2,,,,,,,
2,/x/composed_s_40001.jpg,/x/composed_s_40002.jpg,,,,,,TRUE,2,B,A,,,,,
"""


@pytest.fixture
def store(tmp_path):
    with PreferenceStore(tmp_path / "p.sqlite") as s:
        yield s


def test_paper_csv_import_and_byte_exact_export(store, tmp_path):
    assert detect_format(PAPER_CSV) == "ranked-seeds"
    assert import_ranked_seeds(store, PAPER_CSV) == 4346
    study = store.study("paper")
    assert study["questions"] == 4346 and study["answers"] == 4346
    q = store.questions("paper")[0]
    assert [it.seed for it in q.items] == [35539, 23763]  # first row: winner, loser
    assert q.items[0] == Item("ffhq512-128.pkl", "", seed=35539, psi=1.0, cutoff=14, noise_mode="const")
    out = tmp_path / "again.csv"
    assert export_ranked_seeds(store, out, "paper") == 4346
    assert out.read_bytes() == PAPER_CSV.read_bytes()


def test_bad_csv_changes_nothing(store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(",rank1,rank2\n0,1,2\n1,3,x\n")
    with pytest.raises(FormatError, match="bad.csv:3: rank2"):
        import_ranked_seeds(store, bad)
    bad.write_text(",rank1,rank2\n0,5,5\n")
    with pytest.raises(FormatError, match="same seed"):
        import_ranked_seeds(store, bad)
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(FormatError, match="header"):
        import_ranked_seeds(store, bad)
    with pytest.raises(FormatError, match="unrecognised header"):
        detect_format(bad)
    assert store.studies() == []


def test_files_without_questions_are_refused(store, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text(",rank1,rank2\n")
    with pytest.raises(FormatError, match="no questions in .*empty.csv"):
        import_ranked_seeds(store, empty)
    header, _, incomplete_row, _ = LEGACY.splitlines()
    incomplete = tmp_path / "incomplete.csv"
    incomplete.write_text(f"{header}\n{incomplete_row}\n")
    with pytest.raises(FormatError, match="no questions in .*incomplete.csv .1 incomplete row"):
        import_legacy_questionnaire(store, incomplete, study="old")
    assert store.studies() == []


def test_legacy_questionnaire(store, tmp_path):
    path = tmp_path / "legacy.csv"
    path.write_text(LEGACY)
    assert detect_format(path) == "legacy"
    assert import_legacy_questionnaire(store, path, study="old") == {"imported": 2, "skipped": 1}
    answers = store.answers("old")
    seeds = {q.id: {i: it.seed for i, it in zip(q.item_ids, q.items, strict=True)} for q in store.questions("old")}
    rankings = [[seeds[a.question_id][i] for i in a.ranking] for a in answers]
    assert rankings == [[20003, 20001, 20002], [40002, 40001]]
    path.write_text(LEGACY.replace("TRUE,3,C,A,B", "TRUE,3,C,A,A"))
    with pytest.raises(FormatError, match="letters"):
        import_legacy_questionnaire(store, path, study="old2")
    assert [s["name"] for s in store.studies()] == ["old"]


def test_jsonl_round_trip_is_exact(store, tmp_path):
    store.create_study("s", overlap=2, config={"bank": "b"})
    store.create_study("ab", kind="ab")
    q1 = store.add_question("s", [Item("g", "h", seed=s, psi=0.7, cutoff=None) for s in (1, 2, 3)])
    q2 = store.add_question("s", [Item("g", "h", seed=s) for s in (4, 5)], repeat_of=None)
    q3 = store.add_question("s", [Item("g", "h", seed=s, psi=0.7, cutoff=None) for s in (3, 2, 1)], repeat_of=q1)
    store.add_question("ab", [Item("g", "h", seed=9), Item("g2", "h2", seed=9)])
    ids1, ids2, ids3 = (store.question(q).item_ids for q in (q1, q2, q3))
    store.record_answer(q1, "ann", ranking=[ids1[1], ids1[0], ids1[2]], ui_version="v1")
    store.record_answer(q2, "ann", best=ids2[0], worst=ids2[1])
    store.undo_answer(q2, "ann")
    store.record_answer(q2, "ann", best=ids2[1], worst=ids2[0], extra={"note": 1})
    store.record_answer(q2, "bob", cant_decide=True)
    store.record_answer(q3, "bob", best=ids3[0], worst=ids3[2])
    first = tmp_path / "a.jsonl"
    export_jsonl(store, first)
    with PreferenceStore(tmp_path / "copy.sqlite") as copy:
        assert import_jsonl(copy, first) == {"study": 2, "question": 4, "answer": 5}
        second = tmp_path / "b.jsonl"
        export_jsonl(copy, second)
    assert first.read_text() == second.read_text()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert records[0] == {"format": "nerfsculpt-preferences", "version": 1}


def test_jsonl_errors_name_the_line_and_change_nothing(store, tmp_path):
    store.create_study("s")
    store.add_question("s", [Item("g", seed=1), Item("g", seed=2)])
    good = tmp_path / "good.jsonl"
    export_jsonl(store, good)
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines, '{"type": "answer", "question": 1, "annotator": "a", "best": 0, "worst": 0, '
                              '"ranking": null, "cant_decide": false, "created": 0, "ui_version": "", '
                              '"retracted": null, "extra": {}}']) + "\n")
    with PreferenceStore(tmp_path / "fresh.sqlite") as fresh:
        with pytest.raises(FormatError, match=f"bad.jsonl:{len(lines) + 1}: best and worst"):
            import_jsonl(fresh, bad)
        assert fresh.studies() == []
        bad.write_text("{not json\n")
        with pytest.raises(FormatError, match="not JSON"):
            import_jsonl(fresh, bad)


def test_pairs_csv(store, tmp_path):
    store.create_study("s")
    q = store.add_question("s", [Item("g", seed=s) for s in (1, 2, 3)])
    ids = store.question(q).item_ids
    store.record_answer(q, "ann", ranking=[ids[2], ids[0], ids[1]])
    out = tmp_path / "pairs.csv"
    assert export_pairs_csv(store, out, mode="full") == 3
    rows = list(csv.DictReader(out.open()))
    assert [(r["winner_seed"], r["loser_seed"]) for r in rows] == [("3", "1"), ("3", "2"), ("1", "2")]
    assert export_pairs_csv(store, out, mode="best_worst") == 1
