"""Scaled dot-product attention written from scratch (Vaswani et al. 2017,
arXiv 1706.03762), the core of the Vision Transformer (Dosovitskiy et al. 2021,
arXiv 2010.11929).

Every query is compared with every key by a dot product scaled by 1/sqrt(E), a
softmax over the keys turns those scores into weights that sum to 1, and the output
is the weighted mean of the values:

    attention(Q, K, V) = softmax(Q K^T / sqrt(E)) V.

`attention_weights` returns the softmax matrix itself, the thing attention maps draw.
"""
from __future__ import annotations

import math

import torch

from labcode import validate


def attention_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(query key^T * scale) over the keys.

    Args:
        query: (..., L, E).
        key: (..., S, E).
        attn_mask: broadcastable to (..., L, S); a bool mask keeps the True entries,
            a float mask is added to the scores (as in torch).
        is_causal: query i attends only to keys 0..i.
        scale: defaults to 1 / sqrt(E).

    Returns:
        (..., L, S) weights, each row summing to 1.
    """
    fn = "attention_weights"
    validate.query_key(fn, query, key)
    validate.attention_mask(fn, attn_mask, is_causal)
    return attention_weights_unchecked(query, key, attn_mask, is_causal, scale)


def attention_weights_unchecked(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """`attention_weights` without the checks, for a layer that has checked its input."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)  # (..., L, S)
    if is_causal:
        length, source = query.shape[-2], key.shape[-2]
        attn_mask = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.softmax(scores, dim=-1)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(query key^T / sqrt(E)) value, with torch's arguments.

    Args:
        query: (..., L, E).
        key: (..., S, E).
        value: (..., S, Ev).
        attn_mask, is_causal, scale: as in `attention_weights`.
        dropout_p: probability of dropping an attention weight (training only).

    Returns:
        (..., L, Ev).
    """
    fn = "scaled_dot_product_attention"
    validate.query_key(fn, query, key)
    validate.attention_value(fn, key, value)
    validate.probability(fn, "dropout_p", dropout_p)
    validate.attention_mask(fn, attn_mask, is_causal)
    return scaled_dot_product_attention_unchecked(query, key, value, attn_mask, dropout_p, is_causal, scale)


def scaled_dot_product_attention_unchecked(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """`scaled_dot_product_attention` without the checks, for a layer that has checked."""
    weights = attention_weights_unchecked(query, key, attn_mask, is_causal, scale)  # (..., L, S)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    return weights @ value  # (..., L, Ev)
