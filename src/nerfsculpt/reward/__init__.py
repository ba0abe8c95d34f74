"""Reward models of geometry: the sigma reward (paper §3.2), its baselines, training and scoring.

The library calls, resolved lazily (``import nerfsculpt.reward`` stays light)::

    from nerfsculpt.reward import train_reward, evaluate_reward
    from nerfsculpt.reward.config import RewardModelConfig, RewardTrainConfig
    result = train_reward("prefs.sqlite", "runs/reward", RewardModelConfig(model="tiny", slab_resolution=32))
    table = evaluate_reward(result["bundle"], "prefs.sqlite")

Settings: ``reward.config``; bundles (safetensors + JSON): ``reward.bundle``; scoring a generator or a
bank: ``reward.scoring``. Documented in ``docs/reward.md``.
"""

from __future__ import annotations

__all__ = ["evaluate_reward", "train_reward"]


def __getattr__(name: str):
    if name in __all__:
        from nerfsculpt.reward import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'nerfsculpt.reward' has no attribute {name!r}")
