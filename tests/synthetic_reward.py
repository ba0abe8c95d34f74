"""A small sigma reward trained on a simulated annotator's answers about the default synthetic generator.

The whole chain of the method's first half, at a size that runs in a few CPU minutes: the default
(shipped) synthetic generator, a noiseless single annotator who ranks pairs by the geometry oracle
(the paper's setting: best/worst, HQ anchors), the reference's 70/15/15 split, a small sigma reward
on 32^3 reward slabs trained with the paper's objective. The oracle never reaches the reward, only
the annotator's answers. Used by the reward learning test and the fine-tuning end-to-end test.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.preferences.store import PreferenceStore
from nerfsculpt.reward.bundle import Extraction
from nerfsculpt.reward.data import GeneratorSlabs
from nerfsculpt.reward.pipeline import extraction_for, splits_from_store
from nerfsculpt.reward.sigma_net import SIGMA_PRESETS, SigmaRewardNet
from nerfsculpt.reward.train import RewardTrainConfig, train
from nerfsculpt.synthetic.annotators import AnnotatorPanel, paper_annotator
from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig
from nerfsculpt.synthetic.preferences import simulate_study

QUESTIONS = 300
"""Simulated questions (pairs of distinct seeds 0-599): 210 train, 45 validation, 45 test."""
LEARNER = SIGMA_PRESETS["tiny"]
"""A small sigma reward (the full one's structure; 4 levels instead of 6): ``reward train --model tiny``."""
ORACLE = OracleConfig(resolution=64)


@dataclass
class SyntheticReward:
    net: SigmaRewardNet
    """The trained reward, in eval mode."""
    extraction: Extraction
    splits: object
    """The study's train / validation / test split (``reward.pipeline.splits_from_store``)."""
    source: GeneratorSlabs
    """The generator's reward slabs (cached)."""


def train_synthetic_reward(work: Path) -> SyntheticReward:
    G, info = resolve_generator("synthetic")
    with PreferenceStore(work / "sim.sqlite") as store:
        simulate_study(store, "sim", G, info, range(2 * QUESTIONS), QUESTIONS,
                       AnnotatorPanel([paper_annotator(temperature=0.0)]), GeometryOracle(ORACLE))
        splits = splits_from_store(store, "sim")
        extraction = extraction_for(store, "sim", slab_resolution=32)
    source = GeneratorSlabs(G, extraction, cache_dir=work / "cache", fingerprint=info.fingerprint)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SigmaRewardNet(LEARNER)
        config = RewardTrainConfig(lr=2e-3, batch=4, max_epochs=10, patience=3, anchors=True)
        train(net, splits, source, work / "run", config, progress=False)
    return SyntheticReward(net.eval(), extraction, splits, source)
