"""``nerfsculpt study new`` + the labeling API in A/B mode + ``nerfsculpt study report``."""

import json

import torch
from fastapi.testclient import TestClient

from nerfsculpt.app.server import create_app
from nerfsculpt.cli import main
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.generator.checkpoint import save_network


def test_ab_study_end_to_end(tmp_path, capsys):
    G, _ = resolve_generator("tiny-random", "cpu")
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.01)
    tuned = save_network(tmp_path / "tuned", G_ema=G)
    db = tmp_path / "study.sqlite"
    common = ["--db", str(db), "--seeds", "0-3", "--resolution", "16", "--render-resolution", "32", "--no-progress"]
    assert main(["study", "new", "--before", "tiny-random", "--after", str(tuned), *common]) == 0
    assert main(["study", "new", "--before", "tiny-random", "--after", "tiny-random", "--study", "same",
                 *common]) == 2
    assert "same generator" in capsys.readouterr().err
    assert (tmp_path / "study_banks" / "user-study" / "before" / "manifest.json").exists()
    assert not (tmp_path / "study_banks" / "same").exists(), "refused before any work"

    with TestClient(create_app(db)) as client:
        picks = {"ann": ["after", "after", "before", "none"], "bob": ["after", "after", "after", "after"]}
        for annotator, choices in picks.items():
            for choice in choices:
                state = client.get("/api/state", params={"annotator": annotator}).json()
                assert state["study"]["kind"] == "ab"
                items = state["question"]["items"]
                assert len(items) == 2 and items[0]["seed"] == items[1]["seed"]
                assert items[0]["views"] == ["front", "three_quarter", "profile", "rgb"]
                body = {"question_id": state["question"]["id"], "annotator": annotator}
                if choice == "none":
                    body["cant_decide"] = True
                else:
                    slot = _slot_of(client, tmp_path, state["question"], tuned_side=choice == "after")
                    body.update(best=slot, worst=1 - slot)
                assert client.post("/api/answer", json=body).status_code == 200

    out = tmp_path / "report.json"
    assert main(["study", "report", "--db", str(db), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "ann" in table and "bob" in table
    reports = json.loads(out.read_text())
    assert reports["all"]["counts"] == {"tuned": 6, "original": 1, "none": 1}
    assert reports["ann"]["counts"] == {"tuned": 2, "original": 1, "none": 1}
    assert reports["bob"]["proportions"]["tuned"] == 1.0


def _slot_of(client, tmp_path, question, tuned_side):
    """Slot of the tuned (or original) generator's item, from the study's config."""
    from nerfsculpt.preferences.store import PreferenceStore

    with PreferenceStore(tmp_path / "study.sqlite", create=False) as store:
        after = store.study("user-study")["config"]["after"]["fingerprint"]
        hashes = [store.item(item["item_id"]).generator_hash for item in question["items"]]
    return hashes.index(after) if tuned_side else 1 - hashes.index(after)
