"""nerfsculpt: human-preference fine-tuning of the geometry of EG3D-family 3D-aware GANs.

``import nerfsculpt`` is light: it imports neither torch nor any optional dependency. The
public loaders are resolved lazily on first use::

    import nerfsculpt
    net = nerfsculpt.load_network("ffhq512-128.pkl")   # {'G', 'D', 'G_ema', 'meta'}
    G = nerfsculpt.load_generator("ffhq512-128.pkl")   # the G_ema generator, eval mode
"""

from __future__ import annotations

from nerfsculpt._version import __version__

__all__ = ["__version__", "load_generator", "load_network"]


def __getattr__(name: str):
    if name in ("load_network", "load_generator"):
        from nerfsculpt.generator import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'nerfsculpt' has no attribute {name!r}")
