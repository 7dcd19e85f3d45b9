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
from labcode.functional.conv import autocast_dtype


def attention_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    check: bool = True,
) -> torch.Tensor:
    """softmax(query key^T * scale) over the keys.

    Args:
        query: (..., L, E).
        key: (..., S, E).
        attn_mask: broadcastable to (..., L, S); a bool mask keeps the True entries,
            a float mask is added to the scores (as in torch).
        is_causal: query i attends only to keys 0..i.
        scale: defaults to 1 / sqrt(E).
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (..., L, S) weights, each row summing to 1.
    """
    if check:
        validate.query_key("attention_weights", query, key)
        validate.attention_mask("attention_weights", attn_mask, is_causal)
        validate.attention_mask_dtype("attention_weights", attn_mask)
        if autocast_dtype(query.device.type) is None:  # autocast casts them to one dtype
            validate.same_dtype("attention_weights", query=query, key=key)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)  # (..., L, S)
    if is_causal:  # query i keeps keys 0..i: no query is left without a key
        length, source = query.shape[-2], key.shape[-2]
        causal = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    if attn_mask is None:
        return torch.softmax(scores, dim=-1)
    if attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    else:
        scores = scores + attn_mask
    # A query whose every key is masked attends to nothing: weights 0 (as torch returns),
    # not the 0/0 = NaN of a softmax over minus infinities. Its scores are set to 0 before
    # the softmax so that the backward pass, too, stays free of NaN.
    nothing = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    weights = torch.softmax(scores.masked_fill(nothing, 0.0), dim=-1)
    return weights.masked_fill(nothing, 0.0)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    check: bool = True,
) -> torch.Tensor:
    """softmax(query key^T / sqrt(E)) value, with torch's arguments.

    Args:
        query: (..., L, E).
        key: (..., S, E).
        value: (..., S, Ev).
        attn_mask, is_causal, scale: as in `attention_weights`.
        dropout_p: probability of dropping an attention weight (training only).
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (..., L, Ev).
    """
    if check:
        fn = "scaled_dot_product_attention"
        validate.query_key(fn, query, key)
        validate.attention_value(fn, key, value)
        validate.probability(fn, "dropout_p", dropout_p)
        validate.attention_mask(fn, attn_mask, is_causal)
        validate.attention_mask_dtype(fn, attn_mask)
        if autocast_dtype(query.device.type) is None:  # autocast casts them to one dtype
            validate.same_dtype(fn, query=query, key=key, value=value)
    weights = attention_weights(query, key, attn_mask, is_causal, scale, check=False)  # (..., L, S)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    return weights @ value  # (..., L, Ev)
