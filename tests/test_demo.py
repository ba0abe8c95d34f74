"""``nerfsculpt demo``: the quick run end to end (every section, resumable, the report renders) and the
direction the default run recorded (docs/demo_summary.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nerfsculpt.cli import main
from nerfsculpt.demo import SHIPPED_REWARD, summary_text
from nerfsculpt.evaluate.config import ANALYSES

RECORDED = Path(__file__).resolve().parents[1] / "docs" / "demo_summary.json"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    return out


@pytest.mark.slow
def test_the_quick_demo_writes_every_section(quick_demo, capsys):
    summary = json.loads((quick_demo / "demo.json").read_text())
    assert summary["mode"] == "quick" and summary["reward"]["path"] == str(SHIPPED_REWARD)
    assert summary["reward"]["accuracy"]["test"]["accuracy"]["regular_only/scalar"]["n"] > 0
    assert set(summary["evaluation"]) == set(ANALYSES)
    ran = {name for name, section in summary["evaluation"].items() if section["status"] == "ran"}
    assert ran == set(ANALYSES) - {"identity", "fid"}  # the two that need user-given model files
    verdict = summary["finetune"]["verdict"]
    assert verdict["seeds"] == 6 and {"tuned_change", "control_change", "paired_difference"} <= verdict.keys()
    assert (quick_demo / "report" / "report.html").is_file()
    assert "not evidence" in summary_text(summary) and "Cohen's h" in summary_text(summary)


@pytest.mark.slow
def test_the_demo_resumes_instead_of_redoing(quick_demo, capsys):
    finished = (quick_demo / "tune" / "summary.json").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(quick_demo), "--no-progress", "--device", "cpu"]) == 0
    assert (quick_demo / "tune" / "summary.json").stat().st_mtime_ns == finished
    assert "report:" in capsys.readouterr().out


@pytest.mark.slow
def test_the_demo_report_renders_offline(quick_demo, browser_page):
    page = browser_page
    page.goto((quick_demo / "report" / "report.html").as_uri())
    page.wait_for_load_state("load")
    assert page.locator("img").count() >= 6
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")


def test_the_recorded_default_demo_improves_the_true_geometry_over_the_control():
    recorded = json.loads(RECORDED.read_text())
    verdict = recorded["verdict"]
    assert recorded["mode"] == "default" and verdict["seed_range"][0] >= 50000  # held out: preferences use 0-599
    assert verdict["tuned_change"]["mean"] > verdict["control_change"]["mean"]
    assert verdict["paired_difference"]["ci95"][0] > 0  # tuned - control: the 95 % interval above 0
    assert recorded["evaluation"]["oracle_quality_change"]["ci95"][0] > 0
