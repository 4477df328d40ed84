"""Numerical kernels. ``seqlab.ops`` imports nothing of seqlab beyond itself."""

from seqlab.ops.wkv7 import available_backends, resolve_backend, wkv7

__all__ = ["available_backends", "resolve_backend", "wkv7"]
