"""gencore: the shared PyTorch package of the course on deep generative models.

One module per family (``gencore.vae`` ...), with the plumbing in ``gencore.data``,
``gencore.device``, ``gencore.nn`` and ``gencore.plot``.
"""

from gencore.device import get_device, get_scale, pick, seed_everything

__all__ = ["get_device", "get_scale", "pick", "seed_everything"]
__version__ = "0.1.0"
