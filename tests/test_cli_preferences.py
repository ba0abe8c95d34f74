"""``nerfsculpt prefs ...`` end to end through the CLI entry point."""

import json
from pathlib import Path

from nerfsculpt.cli import main
from nerfsculpt.preferences.store import PreferenceStore

PAPER_CSV = Path(__file__).resolve().parent / "data" / "rankedseedsall.csv"  # the paper's data, §3.1


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
