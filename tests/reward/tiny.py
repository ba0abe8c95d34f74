"""Small reward networks and slabs for unit tests (same structure as the full-size ones)."""

from nerfsculpt.geometry.slab import SlabSpec
from nerfsculpt.reward.heads import HeadsConfig
from nerfsculpt.reward.sigma_net import SigmaRewardConfig

TINY_SIGMA = SigmaRewardConfig(f_maps=(4, 8, 16), num_groups=2, heads=HeadsConfig(
    global_features=64, embedding_hidden=(16, 16), embedding=8, head_hidden=(8, 4)))
"""A sigma reward small enough for unit tests."""
SMALL_SLAB = SlabSpec(resolution=32)
"""The reward slab's crop at 32^3: [16, 18, 17] (X, Y, Z)."""

CPU = ["--no-progress", "--device", "cpu"]
"""Command-line flags of a quiet CPU run."""


def simulated_study(db, seeds: str, questions: int, resolution: int):
    """A preference database of ``questions`` simulated answers about the tiny random generator's ``seeds``."""
    from nerfsculpt.cli import main

    assert main(["synthetic", "preferences", "--db", str(db), "--generator", "tiny-random", "--seeds", seeds,
                 "--questions", str(questions), "--resolution", str(resolution), *CPU]) == 0
    return db
