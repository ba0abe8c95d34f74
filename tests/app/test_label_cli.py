"""``nerfsculpt label new|serve``: question design, repeats, defaults and errors."""

import socket
from collections import Counter

import pytest

from nerfsculpt.cli import main
from nerfsculpt.preferences.schedule import design_questions, parse_item_range
from nerfsculpt.preferences.store import PreferenceStore


def test_label_new_balanced_questions_and_repeats(bank, tmp_path, capsys):
    db = tmp_path / "p.sqlite"
    assert main(["label", "new", "--bank", str(bank), "--db", str(db), "--questions", "20", "--repeats", "3",
                 "--overlap", "2"]) == 0
    assert "nerfsculpt label serve" in capsys.readouterr().out
    with PreferenceStore(db, create=False) as store:
        study = store.study("bank")
        assert study["overlap"] == 2 and study["config"]["items"] == [2, 6]
        questions = store.questions("bank")
        assert len(questions) == 23 and all(2 <= len(q.items) <= 6 for q in questions)
        originals, repeats = questions[:20], questions[20:]
        shown = Counter(it.seed for q in originals for it in q.items)
        assert set(shown) == set(range(8)) and max(shown.values()) - min(shown.values()) <= 1
        for q in repeats:
            original = store.question(q.repeat_of)
            assert sorted(it.seed for it in q.items) == sorted(it.seed for it in original.items)
        item = questions[0].items[0]
        assert (item.generator, item.psi, item.noise_mode, item.kind) == ("tiny-random", 1.0, "const", "regular")


def test_label_new_errors_change_nothing(bank, tmp_path, capsys):
    db = tmp_path / "p.sqlite"
    assert main(["label", "new", "--bank", str(tmp_path / "nope"), "--db", str(db)]) == 2
    assert "not a sample bank" in capsys.readouterr().err
    assert main(["label", "new", "--bank", str(bank), "--db", str(db), "--items", "7"]) == 2
    assert "2-6" in capsys.readouterr().err
    assert main(["label", "new", "--bank", str(bank), "--db", str(db), "--study", "a", "--questions", "3"]) == 0
    assert main(["label", "new", "--bank", str(bank), "--db", str(db), "--study", "a"]) == 2
    assert "already exists" in capsys.readouterr().err
    with PreferenceStore(db, create=False) as store:
        assert len(store.questions("a")) == 3


def test_design_is_deterministic_and_validated():
    a = design_questions(range(10), 30, (3, 5), repeats=4, seed=1)
    assert a == design_questions(range(10), 30, (3, 5), repeats=4, seed=1)
    assert a != design_questions(range(10), 30, (3, 5), repeats=4, seed=2)
    assert sorted({len(q.seeds) for q in a}) == [3, 4, 5]
    assert parse_item_range("4") == (4, 4)
    for bad in ("1-3", "5-3", "x", "2-3-4"):
        with pytest.raises(ValueError, match="2-6"):
            parse_item_range(bad)


def test_label_commands_refuse_a_file_that_is_not_a_database(bank, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    for argv in (["label", "serve", "--db", str(notes)], ["label", "new", "--bank", str(bank), "--db", str(notes)]):
        assert main(argv) == 2, argv
        assert f"{notes} is not a nerfsculpt preference database" in capsys.readouterr().err
    assert notes.read_text() == "hello" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_label_serve_on_a_busy_port_says_so_before_serving(study_db, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["label", "serve", "--db", str(study_db), "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert f"port {port} on 127.0.0.1 is in use; pass --port" in err and "serving" not in out


def test_serve_url_brackets_ipv6_hosts():
    from nerfsculpt.cli.preferences import _serve_url

    assert _serve_url("::1", 8765, None) == "http://[::1]:8765/"
    assert _serve_url("localhost", 8765, None) == "http://localhost:8765/"
    assert _serve_url("127.0.0.1", 9000, None) == "http://127.0.0.1:9000/"
    assert _serve_url("0.0.0.0", 80, "a b") == "http://0.0.0.0:80/?token=a%20b"
