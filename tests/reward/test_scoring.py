import csv

import pytest
import torch

from nerfsculpt.cli import main
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.geometry.bank import BankConfig, open_bank, write_bank
from nerfsculpt.reward.bundle import BundleError, load_bundle, save_bundle
from nerfsculpt.reward.scoring import score_bank, score_seeds
from tests.reward.test_reference import write_release


@pytest.fixture
def bundle_dir(tmp_path, tiny_sigma_net, small_extraction):
    return save_bundle(tmp_path / "bundle", tiny_sigma_net, small_extraction)


def test_scores_from_a_generator_equal_scores_of_its_bank(bundle_dir, slab_bank):
    # two independent paths to the same input: sampling sigma now vs the bank writer's float16 slabs
    bundle = load_bundle(bundle_dir)
    G, _ = resolve_generator("tiny-random", "cpu")
    direct = score_seeds(bundle, G, [0, 1, 2, 3], batch=2)
    banked = score_bank(bundle, open_bank(slab_bank))
    assert list(banked) == [0, 1, 2, 3]
    torch.testing.assert_close(direct, torch.tensor(list(banked.values())), rtol=1e-3, atol=1e-3)
    assert direct.std() > 0  # different seeds, different rewards
    assert not torch.allclose(score_seeds(bundle, G, [0, 1], psi=0.0), direct[:2])


def test_a_bank_cut_differently_is_refused(bundle_dir, tmp_path):
    path = tmp_path / "bank16"
    config = BankConfig(resolution=16, slab_resolution=16, mesh_level=0.0, depth_resolution=8, n_points=32)
    write_bank(path, *resolve_generator("tiny-random", "cpu"), config, [0], ("slab",), progress=False)
    with pytest.raises(BundleError, match="slab crop"):
        score_bank(load_bundle(bundle_dir), open_bank(path))


def test_cli_scores_to_csv_and_reports_bad_usage(bundle_dir, slab_bank, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["reward", "score", "--bundle", str(bundle_dir), "--generator", "tiny-random", "--seeds", "0-2",
                 "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["seed"]) for r in rows] == [0, 1, 2] and all(r["reward"] for r in rows)
    assert main(["reward", "score", "--bundle", str(bundle_dir), "--bank", str(slab_bank), "--seeds", "1",
                 "--no-progress", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("1,")
    assert main(["reward", "score", "--bundle", str(bundle_dir), "--bank", str(slab_bank),
                 "--generator", "tiny-random"]) == 2
    assert "either --bank or --generator" in capsys.readouterr().err
    assert main(["reward", "score", "--bundle", str(tmp_path), "--generator", "tiny-random", "--seeds", "0",
                 "--device", "cpu"]) == 2
    assert "not a reward bundle" in capsys.readouterr().err


def test_cli_imports_a_reference_release(tmp_path, tiny_sigma_net, capsys):
    release = write_release(tmp_path / "release", tiny_sigma_net)
    assert main(["reward", "import-reference", str(release), str(tmp_path / "out")]) == 0
    assert load_bundle(tmp_path / "out").config["source"]["kind"] == "reference-release"
    assert main(["reward", "import-reference", str(release), str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_generator_slabs_are_cached_on_disk_and_reused(tmp_path, small_extraction):
    from nerfsculpt.preferences.store import Item
    from nerfsculpt.reward.data import GeneratorSlabs, prepare

    G, info = resolve_generator("tiny-random", "cpu")
    items = [Item("tiny-random", info.fingerprint, seed=s) for s in (0, 1)] + [
        Item("tiny-random", info.fingerprint, seed=5, psi=0.25, kind="anchor")]
    source = GeneratorSlabs(G, small_extraction, cache_dir=tmp_path, fingerprint=info.fingerprint)
    prepare(source, items, progress=False)
    files = sorted(p.name for p in next(tmp_path.iterdir()).iterdir())
    assert files == ["identity.json", "s0_psi1_cNone_const.safetensors", "s1_psi1_cNone_const.safetensors",
                     "s5_psi0.25_cNone_const.safetensors"]
    assert source.memory == {}  # on disk only: memory stays flat
    again = GeneratorSlabs(G, small_extraction, cache_dir=tmp_path, fingerprint=info.fingerprint)
    assert all(again.known(i) for i in items)
    slab = again.load(items[2])  # read back from disk
    assert slab.dtype == torch.float32 and slab.shape == (16, 18, 17)
    fresh = GeneratorSlabs(G, small_extraction).load(items[2])  # computed now, no cache
    torch.testing.assert_close(slab, fresh)
