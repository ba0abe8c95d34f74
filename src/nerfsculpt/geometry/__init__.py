"""Geometry of EG3D sigma fields: what every later stage of the pipeline consumes.

Modules (import them directly; this package imports nothing heavy):

- ``grid``: sampling grids over the tri-plane box, [x, y, z] array order, EG3D's exact
  ``create_samples`` quirk, memory-bounded chunks.
- ``slab``: the reward slab (crop, 0-100 normalisation, model order) of docs/method/reference_method.md §1.2-1.3.
- ``sigma``: sigma on a grid or on the reward slab from a generator, backbone once per latent,
  chunked, optionally differentiable with activation checkpointing.
- ``views``: depth maps from several cameras of the same latent, point clouds.
- ``mesh``: marching-cubes meshes in world units with EG3D / reference border presets, atomic
  PLY/OBJ/GLB saving with a JSON sidecar.
- ``shading``: shaded renders of the sigma iso-surface for annotators, and the RGB render.
- ``bank``: per-seed sample banks (resumable, shardable under torchrun) and their reader.
"""
