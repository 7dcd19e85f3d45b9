"""The Vision Transformer (ViT), state-dict compatible with torchvision's.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021 (arXiv 2010.11929). The six steps of section 3.1:
cut the image into patches, flatten them, project them linearly to tokens (one
convolution with kernel = stride = patch size does all three), prepend a learned class
token, add learned position embeddings, and run a Transformer encoder of pre-norm
blocks (LayerNorm, multi-head self-attention, residual; LayerNorm, MLP, residual).
The class token's final state, after a last LayerNorm, feeds the classification head.

Module and parameter names are torchvision's (`conv_proj`, `class_token`,
`encoder.pos_embedding`, `encoder.layers.encoder_layer_0.self_attention...`,
`heads.head`), so `vit_b_16`, `vit_b_32` and `vit_l_16` load torchvision's
ImageNet weights with strict=True. `vit_small` is a course-scale model for 28x28
digits or 32x32 colour images.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal, overload

import torch
from torch import nn

from labcode import validate
from labcode.layers.attention import MultiHeadSelfAttention, PatchEmbedding
from labcode.layers.conv import Linear


@dataclass(frozen=True)
class ViTConfig:
    """Everything that fixes a Vision Transformer's shape."""

    image_size: int = 224
    patch_size: int = 16
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    mlp_dim: int = 3072
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.0
    attention_dropout: float = 0.0

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def seq_length(self) -> int:
        """Tokens the encoder sees: one per patch plus the class token."""
        return self.num_patches + 1


@dataclass(frozen=True)
class ViTSize:
    """One row of Table 1 of the ViT paper."""

    model: str
    num_layers: int
    hidden_dim: int
    mlp_dim: int
    num_heads: int
    params: str  # as printed in the paper


# Table 1 of the ViT paper, line by line: Layers, Hidden size D, MLP size, Heads, Params.
TABLE_1 = (
    ViTSize("ViT-Base", num_layers=12, hidden_dim=768, mlp_dim=3072, num_heads=12, params="86M"),
    ViTSize("ViT-Large", num_layers=24, hidden_dim=1024, mlp_dim=4096, num_heads=16, params="307M"),
    ViTSize("ViT-Huge", num_layers=32, hidden_dim=1280, mlp_dim=5120, num_heads=16, params="632M"),
)
SIZES = {row.model: row for row in TABLE_1}


def vit_config(model: str, patch_size: int, **overrides) -> ViTConfig:
    """The configuration of a Table 1 model ("ViT-Base", "ViT-Large", "ViT-Huge").

    Args:
        model: a name from `TABLE_1`.
        patch_size: side of a patch (the "/16" in "ViT-B/16").
        **overrides: any other ViTConfig field, e.g. num_classes or image_size.
    """
    if model not in SIZES:
        raise ValueError(f"vit_config: model must be one of {sorted(SIZES)}, got {model!r}")
    row = SIZES[model]
    config = ViTConfig(patch_size=patch_size, num_layers=row.num_layers, num_heads=row.num_heads,
                       hidden_dim=row.hidden_dim, mlp_dim=row.mlp_dim)
    return replace(config, **overrides)


class MLPBlock(nn.Sequential):
    """The encoder's feed-forward part: Linear, GELU, Dropout, Linear, Dropout."""

    def __init__(self, hidden_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            Linear(hidden_dim, mlp_dim),  # mlp.0
            nn.GELU(),
            nn.Dropout(dropout),
            Linear(mlp_dim, hidden_dim),  # mlp.3
            nn.Dropout(dropout),
        )
        for layer in (self[0], self[3]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """One pre-norm Transformer block (ViT paper, equations 2 and 3)."""

    def __init__(self, hidden_dim: int, num_heads: int, mlp_dim: int,
                 dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = MultiHeadSelfAttention(hidden_dim, num_heads, dropout=attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    @overload
    def forward(self, x: torch.Tensor, need_weights: Literal[False] = ...) -> torch.Tensor: ...
    @overload
    def forward(self, x: torch.Tensor, need_weights: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(self, x: torch.Tensor,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, N+1, D) -> (B, N+1, D); with need_weights, also the attention (B, h, N+1, N+1)."""
        y = self.ln_1(x)  # (B, N+1, D)
        if need_weights:
            y, weights = self.self_attention(y, need_weights=True)  # (B, N+1, D), (B, h, N+1, N+1)
        else:
            y, weights = self.self_attention(y), None  # (B, N+1, D)
        y = self.dropout(y)
        x = x + y  # residual around attention
        z = self.ln_2(x)  # (B, N+1, D)
        z = self.mlp(z)  # (B, N+1, D)
        x = x + z  # residual around the MLP
        if need_weights:
            return x, weights
        return x


class Encoder(nn.Module):
    """Position embeddings, the stack of encoder blocks, and a final LayerNorm."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        # Learned, one D-vector per token position; initialised as in BERT.
        self.pos_embedding = nn.Parameter(torch.empty(1, config.seq_length, config.hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(config.hidden_dim, config.num_heads, config.mlp_dim,
                                                config.dropout, config.attention_dropout))
            for i in range(config.num_layers)
        ))
        self.ln = nn.LayerNorm(config.hidden_dim, eps=1e-6)

    @overload
    def forward(self, x: torch.Tensor, need_weights: Literal[False] = ...) -> torch.Tensor: ...
    @overload
    def forward(self, x: torch.Tensor, need_weights: Literal[True]) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    def forward(self, x: torch.Tensor,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Tokens (B, N+1, D) -> (B, N+1, D); with need_weights, also every block's attention.

        The attention weights come as a list with one (B, h, N+1, N+1) tensor per block.
        """
        x = x + self.pos_embedding  # (B, N+1, D)
        x = self.dropout(x)
        maps = []
        for block in self.layers:
            if need_weights:
                x, weights = block(x, need_weights=True)  # (B, N+1, D), (B, h, N+1, N+1)
                maps.append(weights)
            else:
                x = block(x)  # (B, N+1, D)
        x = self.ln(x)  # (B, N+1, D)
        return (x, maps) if need_weights else x


class VisionTransformer(nn.Module):
    """A Vision Transformer for square images.

    Args:
        config: the model's shape; see `ViTConfig`, `vit_config` and the builders.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"VisionTransformer: config must be a ViTConfig, got {type(config).__name__}")
        for name in ("image_size", "patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim",
                     "in_channels", "num_classes"):
            validate.positive_int("VisionTransformer", name, getattr(config, name))
        for name in ("dropout", "attention_dropout"):
            validate.probability("VisionTransformer", name, getattr(config, name))
        if config.image_size % config.patch_size != 0:
            raise ValueError(
                f"VisionTransformer: image_size={config.image_size} must be divisible by "
                f"patch_size={config.patch_size}"
            )
        self.config = config
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        self.hidden_dim = config.hidden_dim
        self.conv_proj = PatchEmbedding(config.image_size, config.patch_size, config.in_channels, config.hidden_dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, config.hidden_dim))
        self.encoder = Encoder(config)
        self.heads = nn.Sequential(OrderedDict(head=Linear(config.hidden_dim, config.num_classes)))
        self._init_weights()
        validate.trust_inner_layers(self)  # tokens() checks the images once

    def _init_weights(self) -> None:
        # torchvision's choices: fan-in scaled patch projection, zero classifier.
        fan_in = self.conv_proj.in_channels * self.patch_size ** 2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the encoder's input without positions, (B, N+1, D)."""
        validate.image_batch("VisionTransformer", images, self.config.in_channels, self.image_size)
        x = self.conv_proj(images)  # (B, C, H, W) -> (B, D, H/p, W/p) -> (B, N, D)
        cls = self.class_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, x], dim=1)  # (B, N+1, D)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The class token's final state, (B, D): what the head classifies."""
        x = self.tokens(images)  # (B, N+1, D)
        x = self.encoder(x)  # (B, N+1, D): + positions, blocks, LayerNorm
        return x[:, 0]  # (B, D)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> class scores (B, num_classes)."""
        x = self.features(images)  # (B, D)
        return self.heads(x)  # (B, num_classes)

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every block, for pictures.

        Call model.eval() first to switch dropout off.

        Returns:
            One tensor (B, h, N+1, N+1) per encoder block; token 0 is the class
            token, then the patches in row-major order. Each row sums to 1.
        """
        x = self.tokens(images)  # (B, N+1, D)
        _, maps = self.encoder(x, need_weights=True)  # the encoder's own pass, weights kept
        return maps

    @torch.no_grad()
    def position_similarity(self) -> torch.Tensor:
        """Cosine similarity between the patches' position embeddings (ViT paper, fig. 7).

        Returns:
            Shape (g, g, g, g) with g = image_size / patch_size: entry [i, j] is the
            g x g map of how similar patch (i, j)'s embedding is to every other one.
        """
        g = self.image_size // self.patch_size
        pos = self.encoder.pos_embedding[0, 1:]  # (N, D), class token left out
        pos = nn.functional.normalize(pos, dim=-1)  # (N, D), unit length
        similarity = pos @ pos.T  # (N, N)
        return similarity.reshape(g, g, g, g)


def _build(model: str, patch_size: int, num_classes: int, image_size: int, **kwargs) -> VisionTransformer:
    return VisionTransformer(vit_config(model, patch_size, num_classes=num_classes,
                                        image_size=image_size, **kwargs))


def vit_b_16(num_classes: int = 1000, image_size: int = 224, **kwargs) -> VisionTransformer:
    """ViT-Base/16: 86,567,656 parameters with 1000 classes (same as torchvision's)."""
    return _build("ViT-Base", 16, num_classes, image_size, **kwargs)


def vit_b_32(num_classes: int = 1000, image_size: int = 224, **kwargs) -> VisionTransformer:
    """ViT-Base/32: 88,224,232 parameters with 1000 classes (same as torchvision's)."""
    return _build("ViT-Base", 32, num_classes, image_size, **kwargs)


def vit_l_16(num_classes: int = 1000, image_size: int = 224, **kwargs) -> VisionTransformer:
    """ViT-Large/16: 304,326,632 parameters with 1000 classes (same as torchvision's)."""
    return _build("ViT-Large", 16, num_classes, image_size, **kwargs)


def vit_small(num_classes: int = 10, image_size: int = 28, in_channels: int = 1,
              patch_size: int | None = None, num_layers: int = 4, num_heads: int = 4,
              hidden_dim: int = 64, mlp_dim: int = 128, dropout: float = 0.0,
              attention_dropout: float = 0.0) -> VisionTransformer:
    """A course-scale ViT: 28x28 digits by default; image_size=32, in_channels=3 for colour.

    Same architecture as ViT-Base, four blocks of width 64 (about 0.14M parameters);
    an epoch over 4,000 digits takes a second or two on a laptop CPU.

    Args:
        num_classes: outputs of the head.
        image_size: side of the square input images.
        in_channels: 1 for grey digits, 3 for colour.
        patch_size: side of a patch; by default 7 when it divides image_size
            (16 patches of a 28x28 digit), otherwise 4 (64 patches of a 32x32 image).
        num_layers, num_heads, hidden_dim, mlp_dim: the encoder's size.
        dropout, attention_dropout: dropout rates, as in ViTConfig.
    """
    if patch_size is None:
        validate.positive_int("vit_small", "image_size", image_size)
        patch_size = 7 if image_size % 7 == 0 else 4
    return VisionTransformer(ViTConfig(
        image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
        hidden_dim=hidden_dim, mlp_dim=mlp_dim, in_channels=in_channels, num_classes=num_classes,
        dropout=dropout, attention_dropout=attention_dropout,
    ))
