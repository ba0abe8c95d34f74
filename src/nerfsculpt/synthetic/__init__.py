"""Synthetic stand-ins for EG3D and for human annotators, to test the pipeline end to end offline.

Modules (import them directly; this package imports nothing heavy):

- ``heads``: procedural heads, an analytic sigma/colour field in EG3D's frame parameterised by an
  identity, a colour and five defect severities (bumps, nose, holes, floaters, asymmetry).
- ``oracle``: the held-out geometry-quality judge; reads only a sigma grid and scores each defect.
- ``annotators``: simulated annotators ranking 2-6 geometries (Bradley-Terry / Plackett-Luce noise,
  per-defect emphasis, "can't decide").
- ``render``: EG3D's renderer applied to an analytic field (targets comparable to G's renders).
- ``dataset``: EG3D-format dataset zips of defect-free heads (the discriminator's "real images").
- ``generator``: size of the built-in ``synthetic`` generator; ``fit``: fitting it to the heads;
  ``evaluate``: its quality bar on held-out seeds.

Documentation: docs/synthetic.md.
"""
