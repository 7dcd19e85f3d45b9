"""labcode's layers as torch modules, each able to compute with its from-scratch kernel.

Conv2d, Linear (conv.py), MaxPool2d, AvgPool2d (pool.py): drop-in subclasses of
torch's modules (same parameters, same state-dict keys) whose forward uses
`labcode.functional` when the backend is "scratch" (see backend.py).
MultiHeadSelfAttention, PatchEmbedding (attention.py): the Vision Transformer's parts.
SqueezeExcitation, MBConv, FusedMBConv, StochasticDepth (mbconv.py): EfficientNetV2's.
"""
from labcode.layers.backend import Switchable, set_backend
from labcode.layers.conv import Conv2d, Linear
from labcode.layers.pool import AvgPool2d, MaxPool2d
from labcode.layers.attention import MultiHeadSelfAttention, PatchEmbedding
from labcode.layers.mbconv import FusedMBConv, MBConv, SqueezeExcitation, StochasticDepth

__all__ = [
    "Switchable", "set_backend", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d",
    "MultiHeadSelfAttention", "PatchEmbedding", "SqueezeExcitation", "MBConv",
    "FusedMBConv", "StochasticDepth",
]
