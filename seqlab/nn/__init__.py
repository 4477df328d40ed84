"""Small shared layers for sequence models: norms, FFNs, positions, token shift, a KV cache.

``seqlab.nn`` imports nothing of seqlab beyond ``seqlab.ops``, so a plugin can use these layers
without pulling in the trainer.
"""

from seqlab.nn.kv_cache import KVCache
from seqlab.nn.positional import sinusoidal_position_embedding
from seqlab.nn.rmsnorm import RMSNorm
from seqlab.nn.rope import RotaryEmbedding
from seqlab.nn.swiglu import SwiGLU
from seqlab.nn.token_shift import TokenShift, token_shift

__all__ = [
    "KVCache",
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLU",
    "TokenShift",
    "sinusoidal_position_embedding",
    "token_shift",
]
