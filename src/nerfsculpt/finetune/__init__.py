"""Fine-tuning a tri-plane generator with a clamped sigma reward and a sigma-consistency term (paper §3.2.3).

- ``config``: :class:`FinetuneConfig` (paper defaults), the reference preset, batch arithmetic;
- ``losses``: EG3D's GAN terms and the paper's L_r / L_c;
- ``objective``: L_r and L_c of a batch of latents, one backbone pass per latent and truncation;
- ``data``: the discriminator's real images (dataset zip, or data-free renders of the frozen generator);
- ``loop``: the phases of one iteration, G_ema, NaN/Inf handling;
- ``snapshot`` / ``monitor`` / ``run``: run directories, per-tick outputs, the whole run.
"""
