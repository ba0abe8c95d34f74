import pytest

from nerfsculpt.cli import main
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.preferences.store import PreferenceStore
from nerfsculpt.synthetic.annotators import AnnotatorPanel, SimulatedAnnotator
from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig
from nerfsculpt.synthetic.preferences import UI_VERSION, oracle_scores, simulate_study

ORACLE = GeometryOracle(OracleConfig(resolution=48))


@pytest.mark.slow
def test_noiseless_annotators_rank_by_the_oracle_of_the_generators_sigma(tmp_path):
    G, info = resolve_generator("synthetic")
    panel = AnnotatorPanel([SimulatedAnnotator("a", temperature=0.0), SimulatedAnnotator("b", temperature=0.0, seed=5)])
    with PreferenceStore(tmp_path / "p.sqlite") as store:
        summary = simulate_study(store, "sim", G, info, range(12), 6, panel, ORACLE, items=(2, 3))
        assert summary["questions"] == 6 and summary["answers"] == 12
        scores = oracle_scores(G, range(12), ORACLE)
        items = {i: item for q in store.questions("sim") for i, item in zip(q.item_ids, q.items, strict=True)}
        for answer in store.answers("sim"):
            assert answer.ui_version == UI_VERSION
            badness = [scores[items[i].seed].sum() for i in (answer.ranking or (answer.best, answer.worst))]
            assert badness == sorted(badness)  # best first: least defective first
        assert {items[i].generator for i in items} == {"synthetic"}
        assert {items[i].generator_hash for i in items} == {info.fingerprint}


def test_cli_writes_a_study_all_or_nothing(tmp_path, capsys):
    db = tmp_path / "p.sqlite"
    args = ["synthetic", "preferences", "--db", str(db), "--generator", "tiny-random", "--seeds", "0-7",
            "--questions", "4", "--items", "2", "--resolution", "32", "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert "4 questions" in capsys.readouterr().out
    assert main(args) == 2  # the study exists: nothing is added
    with PreferenceStore(db) as store:
        assert len(store.questions("simulated")) == 4 and len(store.answers("simulated")) == 4
    assert main([*args, "--items", "7"]) == 2
    assert "within 2-6" in capsys.readouterr().err
