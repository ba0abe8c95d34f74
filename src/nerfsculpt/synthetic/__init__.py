"""Synthetic stand-ins for EG3D and for human annotators, to test the pipeline end to end offline.

Modules (import them directly; this package imports nothing heavy):

- ``heads``: procedural heads, an analytic sigma/colour field in EG3D's frame parameterised by an
  identity, a colour and five defect severities (bumps, nose, holes, floaters, asymmetry).
- ``oracle``: the held-out geometry-quality judge; reads only a sigma grid and scores each defect.
"""
