"""``nerfsculpt evaluate`` end to end on tiny models: every analysis runs, the report says what did not."""

from __future__ import annotations

import json

import pytest
import torch

from nerfsculpt.cli import main
from nerfsculpt.evaluate.config import EvaluateConfig
from nerfsculpt.evaluate.report import evaluate_generators
from tests.evaluate.test_distribution import TinyDetector
from tests.evaluate.test_identity import TinyEmbedder
from tests.evaluate.test_trajectory import write_ticks

SMALL = EvaluateConfig(seeds=(200000, 200001, 200002, 200003), sweep_psis=(0.0, 1.0), depth_resolution=12,
                       sigma_resolution=12, fid_samples=4, shift_samples=6, renders=1, respondents=3)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_bundle):
    from nerfsculpt.synthetic.dataset import write_dataset

    root = tmp_path_factory.mktemp("evaluate")
    for run, gain in (("run", 0.5), ("control", 1.0)):
        initial = [float(i) for i in range(8)]
        write_ticks(root / run, "rewards", "reward", {0: initial, 1: [1 + gain * v for v in initial]})
    detector = root / "detector.pt"
    torch.jit.save(torch.jit.script(TinyDetector()), str(detector))
    data = write_dataset(root / "reals.zip", 6, 16, 0, progress=False)
    regions = root / "regions.json"
    regions.write_text(json.dumps({"regions": [{"name": "front", "min": [-0.5, -0.5, 0.1], "max": [0.5, 0.5, 0.5]}]}))
    features = root / "features.pt"  # a second feature space: the detector's plain output
    torch.jit.save(torch.jit.script(TinyDetector()), str(features))
    embedder = root / "embedder.pt"
    torch.jit.save(torch.jit.script(TinyEmbedder()), str(embedder))
    return {"root": root, "reward": str(tiny_bundle.path), "detector": str(detector), "data": str(data),
            "regions": str(regions), "embedder": str(embedder), "features": str(features)}


@pytest.mark.slow
def test_every_analysis_with_its_inputs_runs_and_the_rest_is_named(tiny_pair, inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the real features' statistics are cached there
    before, after = tiny_pair
    root = inputs["root"]
    report = evaluate_generators(before, after, inputs["reward"], tmp_path / "report", SMALL, run=root / "run",
                                 control=root / "control", detector=inputs["detector"], data=inputs["data"],
                                 regions=inputs["regions"],
                                 models={"face_embedder": inputs["embedder"], "features": inputs["features"]},
                                 progress=False)
    status = {name: s["status"] for name, s in report["sections"].items()}
    assert status == {"rewards": "ran", "sweep": "ran", "consistency": "ran", "slope": "ran", "truncation": "ran",
                      "embedding": "ran", "attribution": "ran", "identity": "ran", "oracle": "not run",
                      "study": "not run", "image_shift": "ran", "fid": "ran"}
    shift = report["sections"]["image_shift"]["result"]
    assert shift["fid"] > 0 and shift["floor_fid"] > 0 and report["sections"]["image_shift"]["protocol"]["samples"] == 6
    identity = report["sections"]["identity"]
    assert identity["result"]["face_identity"]["across_canonical"]["mean"] <= 1
    assert len(identity["protocol"]["model_sha256"]["face_embedder"]) == 64
    assert identity["protocol"]["views"] == 6  # the 6 labels of the dataset
    attribution = report["sections"]["attribution"]["result"]
    assert set(attribution["summary"]["regions"]) == {"front", "other"}
    assert attribution["summary"]["max_shapley_completeness_error"] < 1e-3
    assert "synthetic" in report["sections"]["oracle"]["reason"]
    slope = report["sections"]["slope"]["result"]
    assert slope["tuned"]["reward"]["b"] == pytest.approx(0.5) and slope["control"]["reward"]["b"] == pytest.approx(1)
    fid = report["sections"]["fid"]
    assert fid["protocol"]["generated"] == 4 and fid["protocol"]["real"] == 6
    assert len(fid["protocol"]["inception_sha256"]) == 64 and fid["result"]["inception"]["original"]["fid"] >= 0
    assert fid["result"]["features"]["cost"]["kid"] == pytest.approx(
        fid["result"]["features"]["tuned"]["kid"] - fid["result"]["features"]["original"]["kid"])
    cached_files = list((tmp_path / "cache" / "nerfsculpt" / "fid").glob("*.safetensors"))
    assert len(cached_files) == 4  # per feature space: the statistics and the KID pool
    from nerfsculpt.evaluate.distribution import cached_dataset_statistics, load_feature_extractor

    def never(images):
        raise AssertionError("the cached statistics should have been read")

    fresh, pool = cached_dataset_statistics(inputs["data"], load_feature_extractor(inputs["detector"]),
                                            fid["protocol"]["inception_sha256"])
    cached, cached_pool = cached_dataset_statistics(inputs["data"], never, fid["protocol"]["inception_sha256"])
    assert cached.n == fresh.n == 6 and (cached.mean == fresh.mean).all() and (cached_pool == pool).all()
    assert report["sections"]["rewards"]["protocol"]["seeds"] == "200000-200003"
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["sections"].keys() == report["sections"].keys()
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "**not run**: the oracle judges" in markdown and "| tuned | reward | 8 | 0.500" in markdown
    assert "## In short" in markdown and "b = 0.50" in markdown
    for figure in ("reward_deltas.png", "truncation_sweep.png", "slope.png", "embedding.png", "attribution.png"):
        assert (tmp_path / "report" / "figures" / figure).stat().st_size > 1000, figure
    from PIL import Image

    renders = Image.open(tmp_path / "report" / "figures" / "renders.png")  # 1 seed x (3 views, gap, 3 views)
    assert renders.size == (6 * 128 + 16, 128)
    assert Image.open(tmp_path / "report" / "figures" / "reward_tails.png").size == (128, 2 * 128)  # best / worst


def test_missing_inputs_are_not_run_never_passed(tiny_pair, tmp_path):
    before, after = tiny_pair
    report = evaluate_generators(before, after, None, tmp_path / "r", SMALL, progress=False)
    for name in ("rewards", "sweep", "consistency", "slope", "embedding", "attribution", "identity", "fid"):
        assert report["sections"][name]["status"] == "not run", name
    assert "--reward" in report["sections"]["rewards"]["reason"] and "--run" in report["sections"]["slope"]["reason"]
    assert "--reward" in report["sections"]["attribution"]["reason"]
    assert "--detector" in report["sections"]["fid"]["reason"]
    assert "--face-embedder" in report["sections"]["identity"]["reason"]
    assert report["sections"]["truncation"]["status"] == "ran"  # needs only the two generators
    write_ticks(tmp_path / "short", "rewards", "reward", {0: [1.0, 2.0, 3.0]})  # a run stopped after tick 0
    broken = evaluate_generators(before, after, None, tmp_path / "b", SMALL, run=tmp_path / "short", progress=False,
                                 only="slope")
    assert broken["sections"]["slope"]["status"] == "failed" and "tick" in broken["sections"]["slope"]["reason"]
    only = evaluate_generators(before, after, None, tmp_path / "one", SMALL, progress=False, only="truncation")
    assert {n for n, s in only["sections"].items() if s["status"] != "skipped"} == {"truncation"}


@pytest.mark.slow
def test_the_oracle_and_a_simulated_study_on_the_built_in_generator(tmp_path):
    import copy

    from nerfsculpt.generator.builtin import resolve_generator

    before, _ = resolve_generator("synthetic", "cpu")
    after = copy.deepcopy(before)
    config = EvaluateConfig(seeds=(200000, 200001, 200002), oracle_resolution=64, respondents=5)
    report = evaluate_generators(before, after, None, tmp_path, config, progress=False, only="oracle")
    rows = {r["measure"]: r for r in report["sections"]["oracle"]["result"]["rows"]}
    assert rows["quality"]["change"] == 0 and rows["quality"]["better"] == 0  # the same weights: no change
    study = evaluate_generators(before, after, None, tmp_path, config, progress=False, only="study")
    counts = study["sections"]["study"]["result"]["counts"]
    assert sum(counts.values()) == 15 and study["sections"]["study"]["protocol"]["respondents"] == 5


@pytest.mark.slow
def test_built_in_heads_get_meshes_beside_their_renders(tiny_bundle, tmp_path):
    import copy

    from nerfsculpt.generator.builtin import resolve_generator

    before, _ = resolve_generator("synthetic", "cpu")
    config = EvaluateConfig(seeds=(200000, 200001, 200002), renders=1)
    report = evaluate_generators(before, copy.deepcopy(before), str(tiny_bundle.path), tmp_path, config,
                                 progress=False, only="rewards")
    meshes = report["sections"]["rewards"]["meshes"]
    assert meshes == ["meshes/seed-200000-original.glb", "meshes/seed-200000-tuned.glb"]
    assert all((tmp_path / m).stat().st_size > 10_000 for m in meshes)
    assert '<a href="meshes/seed-200000-tuned.glb">' in (tmp_path / "report.html").read_text()


def test_cli_plumbing(capsys, tmp_path):
    assert main(["evaluate", "--after", "tiny-random", "--dry-run", "--out", str(tmp_path)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["config"]["psi"] == 0.7 and plan["config"]["seeds"] == "100 seeds" and plan["analysis"] == "all"
    assert main(["evaluate", "--after", "tiny-random"]) == 2
    assert "--out REPORT is required" in capsys.readouterr().err
    assert main(["evaluate", "nonsense", "--after", "x", "--out", "o"]) == 2
    code = main(["evaluate", "truncation", "--before", "tiny-random", "--after", "tiny-random", "--out",
                 str(tmp_path / "r"), "--seeds", "200000-200002", "--depth-resolution", "8", "--sigma-resolution", "8",
                 "--no-progress", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "truncation: ran" in out and (tmp_path / "r" / "report.html").is_file()


@pytest.mark.slow
def test_the_html_report_renders_offline_with_every_image(tiny_pair, inputs, tmp_path, browser_page):
    before, after = tiny_pair
    evaluate_generators(before, after, inputs["reward"], tmp_path, SMALL, run=inputs["root"] / "run",
                        progress=False, only=None)
    page = browser_page
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto((tmp_path / "report.html").as_uri())
    page.wait_for_load_state("load")
    images = page.locator("img")
    assert images.count() >= 4
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert not failed and "Same-latent reward change" in page.content()
