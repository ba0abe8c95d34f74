"""Geometry of sigma fields, independent of any generator.

Modules (import them directly; this package imports nothing heavy):

- ``grid``: sampling grids over the tri-plane box, [x, y, z] array order, EG3D's exact
  ``create_samples`` quirk, memory-bounded chunks.
- ``slab``: the reward slab (crop, 0-100 normalisation, model order) of reference_method.md §1.2-1.3.
- ``mesh``: marching-cubes meshes in world units with EG3D / reference border presets, atomic
  PLY/OBJ/GLB saving with a JSON sidecar.
"""
