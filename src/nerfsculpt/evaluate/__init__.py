"""Evaluation of a fine-tuned generator against its original: the paper's §4 analyses.

- ``distribution``: FID and KID maths (float64) and user-given feature extractors.

Documented in ``docs/evaluate.md``; the definitions are in docs/method/reference_method.md §7.
"""
