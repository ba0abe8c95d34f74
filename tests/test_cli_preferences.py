"""``nerfsculpt prefs ...`` and ``study report --counts`` end to end through the CLI entry point."""

import json
from pathlib import Path

from nerfsculpt.cli import main
from nerfsculpt.preferences.store import PreferenceStore

PAPER_CSV = Path(__file__).resolve().parent / "data" / "rankedseedsall.csv"  # the paper's data, §3.1
SMALL_CSV = ",rank1,rank2\n0,1,2\n1,3,4\n"


def test_import_split_stats_export(tmp_path, capsys):
    db = tmp_path / "paper.sqlite"
    assert main(["prefs", "import", str(PAPER_CSV), "--db", str(db)]) == 0
    assert "4346 questions" in capsys.readouterr().out
    assert main(["prefs", "split", "--db", str(db), "--study", "paper"]) == 0
    split = json.loads(capsys.readouterr().out)
    assert [split[k]["questions"] for k in ("train", "val", "test")] == [3042, 652, 652]
    assert split["test"]["pairs"] == 1956  # reference_method.md §3.6: 3 pairs per test question with anchors
    assert main(["prefs", "split", "--db", str(db), "--study", "paper", "--no-anchors"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["pairs"] == 652
    assert main(["prefs", "stats", "--db", str(db), "--study", "paper", "--json", str(tmp_path / "s.json")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["answers"] == 4346 and stats["pairwise_agreement"]["rate"] is None
    assert json.loads((tmp_path / "s.json").read_text()) == stats
    out = tmp_path / "again.csv"
    assert main(["prefs", "export", "--db", str(db), "--format", "ranked-seeds", "--study", "paper",
                 "--out", str(out)]) == 0
    assert out.read_bytes() == PAPER_CSV.read_bytes()
    jsonl = tmp_path / "all.jsonl"
    assert main(["prefs", "export", "--db", str(db), "--out", str(jsonl)]) == 0
    assert main(["prefs", "import", str(jsonl), "--db", str(tmp_path / "copy.sqlite")]) == 0
    with PreferenceStore(tmp_path / "copy.sqlite") as copy:
        assert copy.study("paper")["answers"] == 4346


def test_errors_are_one_line_and_change_nothing(tmp_path, capsys):
    db = tmp_path / "p.sqlite"
    assert main(["prefs", "export", "--db", str(db), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no preference database" in capsys.readouterr().err and not db.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text(",rank1,rank2\n0,1,2\n1,2,oops\n")
    assert main(["prefs", "import", str(bad), "--db", str(db)]) == 2
    assert "bad.csv:3" in capsys.readouterr().err
    with PreferenceStore(db) as store:
        assert store.studies() == []
    assert main(["prefs", "import", str(tmp_path / "missing.csv"), "--db", str(db)]) == 2
    assert main(["prefs", "stats", "--db", str(db), "--study", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_a_file_that_is_not_a_database_is_a_one_line_error_and_left_unchanged(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    csv = tmp_path / "small.csv"
    csv.write_text(SMALL_CSV)
    db = ["--db", str(notes)]
    commands = [["prefs", "stats", *db, "--study", "paper"], ["prefs", "import", str(csv), *db],
                ["prefs", "export", *db, "--out", str(tmp_path / "x.jsonl")],
                ["prefs", "split", *db, "--study", "paper"], ["study", "report", *db]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{notes} is not a nerfsculpt preference database" in err and err.count("\n") == 1, argv
    assert notes.read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "small.csv"]


def test_a_failed_import_creates_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(",rank1,rank2\n0,1,2\n1,2,oops\n")
    assert main(["prefs", "import", str(bad), "--db", str(tmp_path / "new.sqlite")]) == 2
    assert "bad.csv:3" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]


def test_an_import_without_questions_is_refused_and_changes_nothing(tmp_path, capsys):
    empty, good, db = tmp_path / "empty.csv", tmp_path / "good.csv", tmp_path / "p.sqlite"
    empty.write_text(",rank1,rank2\n")
    good.write_text(SMALL_CSV)
    assert main(["prefs", "import", str(empty), "--db", str(db)]) == 2
    assert f"no questions in {empty}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "good.csv"]
    assert main(["prefs", "import", str(good), "--db", str(db), "--study", "first"]) == 0
    before = db.read_bytes()
    assert main(["prefs", "import", str(empty), "--db", str(db)]) == 2
    assert db.read_bytes() == before
    assert main(["prefs", "import", str(good), "--db", str(db)]) == 0
    with PreferenceStore(db, create=False) as store:
        assert [(s["name"], s["questions"]) for s in store.studies()] == [("first", 2), ("paper", 2)]


def test_stats_default_to_the_only_study(tmp_path, capsys):
    csv, db = tmp_path / "small.csv", tmp_path / "p.sqlite"
    csv.write_text(SMALL_CSV)
    assert main(["prefs", "import", str(csv), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["prefs", "stats", "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "paper"
    assert main(["prefs", "import", str(csv), "--db", str(db), "--study", "again"]) == 0
    capsys.readouterr()
    assert main(["prefs", "stats", "--db", str(db)]) == 2
    assert "2 studies (paper, again); choose one with --study" in capsys.readouterr().err


def test_study_report_counts_are_three_non_negative_integers(capsys):
    for bad in ("1,2", "1,2,3,4", "1,-2,3", "1,x,3"):
        assert main(["study", "report", "--counts", bad]) == 2, bad
        assert "--counts must be three non-negative integers TUNED,ORIGINAL,NONE" in capsys.readouterr().err
    assert main(["study", "report", "--counts", "0,0,0"]) == 2
    assert "positive total" in capsys.readouterr().err
    assert main(["study", "report", "--counts", "506,141,33"]) == 0
    assert "0.744" in capsys.readouterr().out
