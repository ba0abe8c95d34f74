"""Evaluation of a fine-tuned generator against its original: the paper's §4 analyses.

- ``report``: ``nerfsculpt evaluate``: every analysis, one report (``config``: its settings; ``figures``);
- ``rewards``: same-latent reward deltas, the truncation sweep, rank consistency across psi;
- ``trajectory``: the final-against-initial slope of a run's tick logs;
- ``truncation``: is the change a slide toward the average face?
- ``embedding``: silhouettes and 2-D pictures of the reward's embedding;
- ``attribution``: Shapley values and integrated gradients of the reward change over face regions;
- ``identity``: LPIPS and face-embedding drift;
- ``distribution``: FID and KID maths (float64) and user-given feature extractors;
- ``synthetic``: the built-in benchmark's oracle table and a simulated A/B study.

Documented in ``docs/evaluate.md``; the definitions are in docs/method/reference_method.md §7.
"""
