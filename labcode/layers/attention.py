"""The Vision Transformer's own layers: multi-head self-attention and patch embedding.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021 (arXiv 2010.11929), section 3.1 and equation (1);
attention itself is from Vaswani et al., "Attention Is All You Need", NeurIPS 2017
(arXiv 1706.03762), section 3.2.

- `MultiHeadSelfAttention`: the same parameters, under the same state-dict keys, as
  `torch.nn.MultiheadAttention` (`in_proj_weight`, `in_proj_bias`, `out_proj.*`), so
  torchvision's ViT weights load into it; the forward pass is written out step by step.
- `PatchEmbedding`: cut the image into p x p patches and project each one to a
  D-dimensional token. It is a convolution whose kernel and stride are both p.
- `patchify`: the same cut as a plain reshape, so that "flatten each patch, then a
  linear layer" can be checked to equal the convolution.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import labcode.functional as LF
from labcode import validate
from labcode.layers.backend import Switchable
from labcode.layers.conv import Conv2d, Linear
from labcode.validate import ChecksInput


class MultiHeadSelfAttention(nn.Module, Switchable, ChecksInput):
    """Multi-head self-attention over a sequence of tokens, batch first.

    Every token is projected to a query, a key and a value; each of `num_heads`
    heads compares queries with keys in its own `embed_dim // num_heads`-dimensional
    subspace, and the heads' outputs are concatenated and mixed by `out_proj`.

    Args:
        embed_dim: token width D; must be divisible by `num_heads`.
        num_heads: number of heads h; each works in d = D / h dimensions.
        dropout: probability of dropping an attention weight during training
            (as in torch.nn.MultiheadAttention).
        bias: whether the input and output projections have a bias.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        validate.positive_int("MultiHeadSelfAttention", "embed_dim", embed_dim)
        validate.positive_int("MultiHeadSelfAttention", "num_heads", num_heads)
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"MultiHeadSelfAttention: embed_dim must be divisible by num_heads, "
                f"got embed_dim={embed_dim} and num_heads={num_heads}"
            )
        validate.probability("MultiHeadSelfAttention", "dropout", dropout)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        # Queries, keys and values stacked in one (3D, D) matrix, as torch stores them.
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn.MultiheadAttention's initialisation.
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """softmax(Q K^T / sqrt(d)) for every head: (B, h, N, d) twice -> (B, h, N, N)."""
        if self.scratch:
            return LF.attention_weights(q, k, check=False)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, N, N)
        return torch.softmax(scores, dim=-1)

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from every token to every token.

        Args:
            x: tokens, shape (B, N, D).
            need_weights: also return the attention weights of every head.

        Returns:
            The output tokens (B, N, D), or the pair (output, weights (B, h, N, N))
            when `need_weights` is true. Each row of weights sums to 1.
        """
        if self.check_input:
            validate.token_batch("MultiHeadSelfAttention", x, self.embed_dim)
        B, N, D = x.shape
        h, d = self.num_heads, self.head_dim
        p = self.dropout if self.training else 0.0

        if self.scratch:
            qkv = LF.linear(x, self.in_proj_weight, self.in_proj_bias, check=False)  # (B, N, 3D)
        else:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, N, 3D)
        q, k, v = qkv.chunk(3, dim=-1)  # 3 x (B, N, D)
        q = q.reshape(B, N, h, d).transpose(1, 2)  # (B, h, N, d)
        k = k.reshape(B, N, h, d).transpose(1, 2)  # (B, h, N, d)
        v = v.reshape(B, N, h, d).transpose(1, 2)  # (B, h, N, d)

        if need_weights:
            weights = self.attention_weights(q, k)  # (B, h, N, N)
            out = F.dropout(weights, p=p) @ v  # (B, h, N, d)
        elif self.scratch:
            out = LF.scaled_dot_product_attention(q, k, v, dropout_p=p, check=False)  # (B, h, N, d)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, N, d)

        out = out.transpose(1, 2).reshape(B, N, D)  # (B, N, D): heads side by side
        out = self.out_proj(out)  # (B, N, D)
        if need_weights:
            return out, weights
        return out


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches and flatten each one.

    Patches come in row-major order over the image; inside a patch the values are
    ordered (channel, row, column), the order of a Conv2d weight's last three axes,
    so `patchify(x, p) @ conv.weight.reshape(D, -1).T + conv.bias` equals the patch
    embedding convolution.

    Args:
        images: shape (B, C, H, W), with H and W divisible by `patch_size`.
        patch_size: side p of a patch.

    Returns:
        Shape (B, N, C * p * p) with N = (H / p) * (W / p).
    """
    validate.tensor("patchify", "images", images)
    validate.positive_int("patchify", "patch_size", patch_size)
    validate.rank("patchify", "images", images, 4, "(B, C, H, W)")
    B, C, H, W = images.shape
    p = patch_size
    validate.divisible_by_patch("patchify", H, W, p)
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/p, p, W/p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C*p*p)


class PatchEmbedding(Conv2d):
    """Turn an image into a sequence of patch tokens: a Conv2d with kernel = stride = p.

    Its parameters are a Conv2d's (`weight` (D, C, p, p), `bias` (D,)), so in the
    Vision Transformer it sits where torchvision keeps `conv_proj`.

    Args:
        image_size: side of the (square) images the model is built for.
        patch_size: side p of a patch; must divide `image_size`.
        in_channels: channels C of the images.
        embed_dim: width D of a token.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, embed_dim: int) -> None:
        for name, value in [("image_size", image_size), ("patch_size", patch_size),
                            ("in_channels", in_channels), ("embed_dim", embed_dim)]:
            validate.positive_int("PatchEmbedding", name, value)
        if image_size % patch_size != 0:
            raise ValueError(
                f"PatchEmbedding: image_size={image_size} must be divisible by patch_size={patch_size}"
            )
        super().__init__(in_channels=in_channels, out_channels=embed_dim,
                         kernel_size=patch_size, stride=patch_size)
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size ** 2

    def extra_repr(self) -> str:
        return super().extra_repr() + f", image_size={self.image_size}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D), N = (H / p) * (W / p), patches in row-major order."""
        x = self.feature_map(images)  # (B, D, H/p, W/p): one D-vector per patch
        x = x.flatten(2)  # (B, D, N)
        return x.transpose(1, 2)  # (B, N, D)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The convolution alone, before flattening: (B, C, H, W) -> (B, D, H/p, W/p)."""
        if self.check_input:
            validate.image_batch("PatchEmbedding", images, self.in_channels)
            validate.divisible_by_patch("PatchEmbedding", images.shape[2], images.shape[3], self.patch_size)
        return self.convolve(images)  # (B, D, H/p, W/p)
