"""Learning test on the synthetic benchmark: a small sigma reward learns a simulated annotator's taste.

The reward is ``tests.synthetic_reward`` (the default synthetic generator, a noiseless simulated
annotator, 300 questions, a small sigma reward on 32^3 slabs; shared with the fine-tuning end-to-end
test). The oracle is the held-out judge: the reward never sees it, only the annotator's answers.
"""

import numpy as np
from scipy.stats import spearmanr

from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.reward.bundle import RewardBundle
from nerfsculpt.reward.losses import weights_for
from nerfsculpt.reward.scoring import score_seeds
from nerfsculpt.reward.train import evaluate, format_table
from nerfsculpt.synthetic.oracle import GeometryOracle
from nerfsculpt.synthetic.preferences import oracle_scores
from tests.synthetic_reward import ORACLE


def test_sigma_reward_learns_the_simulated_annotator(synthetic_reward):
    G, _ = resolve_generator("synthetic")
    net, extraction, splits, source = (synthetic_reward.net, synthetic_reward.extraction, synthetic_reward.splits,
                                       synthetic_reward.source)
    oracle = GeometryOracle(ORACLE)
    result = evaluate(net, splits.lists("test", True, seed=0), source, weights_for("paper"))
    print(format_table({"test": result}))
    # 45 test pairs measure accuracy to about +-0.12 (95 %): far above chance, not finer than that
    regular = result["accuracy"]["regular_only/scalar"]
    assert regular["n"] >= 40 and regular["accuracy"] >= 0.75, format_table({"test": result})

    held_out = list(range(50000, 50100))  # seeds no question used
    rewards = score_seeds(RewardBundle(net.eval(), extraction, {}), G, held_out, batch=4).numpy()
    judged = oracle_scores(G, held_out, oracle)
    quality = -np.stack([judged[s] for s in held_out]).sum(1)
    assert spearmanr(rewards, quality).statistic >= 0.6
    i, j = np.triu_indices(len(held_out), 1)  # every pair of unseen seeds, near-ties of the oracle included
    assert np.mean(np.sign(rewards[i] - rewards[j]) == np.sign(quality[i] - quality[j])) >= 0.75
