"""Every argument and input check that labcode's functions, layers and models make.

Each check raises a TypeError or ValueError whose message starts with the name of the
public function, layer or model that was called, and names what was expected and what
came, so that a student sees

    conv2d: input must be 4-D (N, C, H, W), got shape (3, 32, 32)

rather than an error from deep inside torch. TypeError means the argument is the wrong
kind of thing (a list where a tensor goes, a string where an int goes); ValueError means
the right kind with a wrong value (a negative size, the wrong number of channels). An
argument that must be an int but is a float, a bool or a string raises `NotAnIntError`,
which is both.

Checks run once, at the public boundary (style guide, rule 8: "check inputs at the
public boundary; inside, trust the data"). A layer called on its own checks its input.
A model checks its batch in `forward` and then switches the checks of its inner layers
off with `trust_inner_layers(self)`: every layer it calls gets a tensor that the model
itself produced, so checking it again would only repeat work. Functional ops check
their arguments unless called with `check=False`, which is what a layer that has
already checked its input passes.
"""
from __future__ import annotations

import torch
from torch import nn

IntPair = int | tuple[int, int]
PADDING_MODES = ("valid", "same", "full")  # see labcode.functional.sizes


class NotAnIntError(TypeError, ValueError):
    """An argument that must be an int got a float, a bool, a string or something else.

    A TypeError by Python's convention, and also a ValueError: the model builders raised
    ValueError for a bad `num_classes` of any kind, and code that catches that still works.
    """


# -- plain arguments ----------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(fn: str, name: str, value: object) -> int:
    """`value` if it is an int of at least 1; bool, float and str are refused."""
    return int_at_least(fn, name, value, 1)


def int_at_least(fn: str, name: str, value: object, minimum: int) -> int:
    """`value` if it is an int of at least `minimum`."""
    if not _is_int(value):
        raise NotAnIntError(
            f"{fn}: {name} must be an int of at least {minimum}, "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be at least {minimum}, got {value}")
    return value


def probability(fn: str, name: str, value: object) -> float:
    """`value` if it is a number in [0, 1] (a dropout rate, a drop probability)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}: {name} must be a number in [0, 1], got {value!r} ({type(value).__name__})")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{fn}: {name} must be in [0, 1], got {value}")
    return float(value)


def pair(fn: str, name: str, value: object, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as (h, w), each at least `minimum`."""
    if _is_int(value):
        values = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        values = (int(value[0]), int(value[1]))
    else:
        raise NotAnIntError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{fn}: {name} must be at least {minimum}, got {value!r}")
    return values


def padding_mode(fn: str, padding: object, stride: object) -> None:
    """Raise unless a string padding is one of PADDING_MODES, and "same" has stride 1."""
    if not isinstance(padding, str):
        return
    if padding not in PADDING_MODES:
        raise ValueError(f"{fn}: padding must be an int, a pair or one of {PADDING_MODES}, got {padding!r}")
    if padding == "same" and pair(fn, "stride", stride, minimum=1) != (1, 1):
        raise ValueError(f"{fn}: padding='same' needs stride 1 (as in torch), got stride {stride}")


def window_fits(fn: str, what: str, window: tuple[int, int], size: tuple[int, int]) -> None:
    """Raise unless a (dilated) window of `window` fits into the padded input `size`."""
    if window[0] > size[0] or window[1] > size[1]:
        raise ValueError(f"{fn}: {what} {window} is larger than the padded input {size}")


def divisible_by_patch(fn: str, height: int, width: int, patch_size: int) -> None:
    """Raise unless an image of height x width cuts into whole patch_size patches."""
    if height % patch_size or width % patch_size:
        raise ValueError(f"{fn}: image size {height}x{width} must be divisible by patch_size={patch_size}")


# -- tensors ------------------------------------------------------------------------------


def tensor(fn: str, name: str, value: object, optional: bool = False) -> None:
    """Raise TypeError unless `value` is a tensor (or None when `optional`)."""
    if value is None and optional:
        return
    if not isinstance(value, torch.Tensor):
        kind = "a tensor or None (torch.Tensor)" if optional else "a tensor (torch.Tensor)"
        raise TypeError(f"{fn}: {name} must be {kind}, got {type(value).__name__}")


def floating(fn: str, name: str, value: torch.Tensor) -> None:
    """Raise TypeError unless `value` has a floating-point (or complex) dtype."""
    if value.is_floating_point() or value.is_complex():
        return
    message = f"{fn}: {name} must be a floating-point tensor, got dtype {value.dtype}"
    if value.dtype == torch.uint8:
        # labcode.data's images are uint8 0-255; the chapters convert them like this.
        message += (
            "; convert images with images.float() / 255, or let labcode.data.GPULoader "
            "convert and normalise them"
        )
    raise TypeError(message)


def same_dtype(fn: str, **tensors: torch.Tensor | None) -> None:
    """Raise TypeError unless the given tensors (None skipped) share one dtype, as torch's
    kernels require outside autocast (torch would promote nothing and fail deep inside)."""
    given = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(given.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in given.items())
        names = list(given)
        together = ", ".join(names[:-1]) + " and " + names[-1]
        raise TypeError(f"{fn}: {together} must have the same dtype, got {listed}")


def flag(fn: str, name: str, value: object) -> bool:
    """`value` if it is a bool (ceil_mode, return_indices, ...)."""
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def attention_mask_dtype(fn: str, attn_mask: torch.Tensor | None) -> None:
    """Raise TypeError unless the mask is bool (True = attend) or floating (added to the
    scores); torch refuses an integer 0/1 mask, which would otherwise be added as a bias."""
    if attn_mask is not None and attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(
            f"{fn}: attn_mask must be a bool tensor (True = attend) or a floating tensor "
            f"added to the scores, got dtype {attn_mask.dtype}; use attn_mask.bool()"
        )


def rank(fn: str, name: str, value: torch.Tensor, dims: int, layout: str) -> None:
    """Raise ValueError unless `value` has `dims` dimensions, laid out as `layout`."""
    if value.dim() != dims:
        raise ValueError(f"{fn}: {name} must be {dims}-D {layout}, got shape {tuple(value.shape)}")


def image_batch(
    fn: str, value: object, channels: int | None = None, size: int | None = None
) -> None:
    """Raise unless `value` is a floating (B, C, H, W) batch, with `channels` channels
    and `size` x `size` pixels where given."""
    c = "C" if channels is None else str(channels)
    hw = "H, W" if size is None else f"{size}, {size}"
    layout = f"(B, {c}, {hw})"
    tensor(fn, "input", value)
    rank(fn, "input", value, 4, layout)
    floating(fn, "input", value)
    shape = tuple(value.shape)
    if channels is not None and shape[1] != channels:
        raise ValueError(
            f"{fn}: expected {channels} input channels, got {shape[1]} channels; "
            f"expected input with {channels} channels as {layout}, got shape {shape}"
        )
    if size is not None and shape[2:] != (size, size):
        raise ValueError(
            f"{fn}: expected {size}x{size} images as {layout}, got shape {shape}"
        )


def token_batch(fn: str, value: object, width: int) -> None:
    """Raise unless `value` is a floating (B, N, D) batch of tokens with D == `width`."""
    tensor(fn, "input", value)
    rank(fn, "input", value, 3, f"(B, N, D={width})")
    floating(fn, "input", value)
    if value.shape[-1] != width:
        raise ValueError(
            f"{fn}: input width must be embed_dim={width}, "
            f"got shape {tuple(value.shape)} (width {value.shape[-1]})"
        )


def features(fn: str, value: object, width: int) -> None:
    """Raise unless `value` is a floating (..., width) tensor."""
    tensor(fn, "input", value)
    if value.dim() < 1 or value.shape[-1] != width:
        raise ValueError(f"{fn}: expected input of shape (..., {width}), got shape {tuple(value.shape)}")
    floating(fn, "input", value)


def conv_channels(fn: str, input: torch.Tensor, weight: torch.Tensor, groups: int) -> None:
    """Raise unless a (C_out, C_in / groups, kh, kw) weight fits the input's channels."""
    channels = input.shape[1]
    if channels != weight.shape[1] * groups:
        raise ValueError(
            f"{fn}: weight {tuple(weight.shape)} with groups={groups} expects "
            f"{weight.shape[1] * groups} input channels, got {channels} "
            f"(input shape {tuple(input.shape)})"
        )


def conv2d_arguments(
    fn: str, input: object, weight: object, bias: object, stride: object, dilation: object,
    groups: object,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Check conv2d's tensors and numbers; return (stride, dilation) as pairs."""
    tensor(fn, "input", input)
    tensor(fn, "weight", weight)
    tensor(fn, "bias", bias, optional=True)
    rank(fn, "input", input, 4, "(N, C, H, W)")
    rank(fn, "weight", weight, 4, "(C_out, C_in / groups, kh, kw)")
    floating(fn, "input", input)
    floating(fn, "weight", weight)
    positive_int(fn, "groups", groups)
    channels, out_channels = input.shape[1], weight.shape[0]
    if channels % groups or out_channels % groups:
        raise ValueError(
            f"{fn}: groups={groups} must divide the input channels ({channels}) "
            f"and the output channels ({out_channels})"
        )
    conv_channels(fn, input, weight, groups)
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{fn}: bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    kernel = (weight.shape[2], weight.shape[3])
    if min(kernel) < 1:
        raise ValueError(f"{fn}: kernel size must be at least 1, got {kernel}")
    return pair(fn, "stride", stride, minimum=1), pair(fn, "dilation", dilation, minimum=1)


def pool_arguments(
    fn: str, kernel_size: object, stride: object, padding: object
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Check a pooling window's numbers; return (kernel, stride, padding) as pairs.

    The stride defaults to the kernel size; the padding is at most half the window.
    """
    kernel = pair(fn, "kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else pair(fn, "stride", stride, minimum=1)
    pad = pair(fn, "padding", padding, minimum=0)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(
            f"{fn}: padding must be at most half the kernel size "
            f"({kernel[0] // 2}, {kernel[1] // 2}), got {pad}"
        )
    return kernel, stride, pad


def pool_input(
    fn: str, input: object, kernel_size: object, stride: object, padding: object,
    dilation: object = 1, ceil_mode: bool = False,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Check a pooling's input batch and window; return (kernel, stride, padding) as pairs."""
    image_batch(fn, input)
    kernel, stride, padding = pool_arguments(fn, kernel_size, stride, padding)
    dilation = pair(fn, "dilation", dilation, minimum=1)
    pooled_size(fn, (input.shape[2], input.shape[3]), kernel, stride, padding, dilation, ceil_mode)
    return kernel, stride, padding


def pooled_size(
    fn: str, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], ceil_mode: bool,
) -> tuple[int, int]:
    """A pooling's output size (H_out, W_out), rounded as torch rounds it; raise ValueError
    if it would be empty.

    Per axis, floor((n + 2p - d(k - 1) - 1) / s) + 1, or ceil with ceil_mode, where the
    last window must start inside the input or its left padding. So with ceil_mode a window
    larger than the padded input is taken, as in torch (2x2 input, kernel 3, stride 2:
    one window).
    """
    out = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        length = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (length - 1) * s >= n + p:
            length -= 1
        out.append(length)
    if min(out) < 1:
        reach = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        dilated = f" (kernel {kernel} with dilation {dilation})" if dilation != (1, 1) else ""
        padded = tuple(n + 2 * p for n, p in zip(size, padding))
        raise ValueError(
            f"{fn}: the pooling window {reach}{dilated} does not fit the padded input {padded}"
            f"{' even with ceil_mode' if ceil_mode else ''}: the output would be empty"
        )
    return out[0], out[1]


def kernel_fits(
    fn: str, input: torch.Tensor, kernel: tuple[int, int], dilation: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> None:
    """Raise unless the dilated kernel fits into the input padded by (top, bottom, left, right)."""
    padded = (input.shape[2] + pads[0] + pads[1], input.shape[3] + pads[2] + pads[3])
    reach = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    window_fits(fn, "the (dilated) kernel", reach, padded)


def linear_arguments(fn: str, input: object, weight: object, bias: object) -> None:
    """Check linear's input (..., in), weight (out, in) and bias (out,) or None."""
    tensor(fn, "input", input)
    tensor(fn, "weight", weight)
    tensor(fn, "bias", bias, optional=True)
    floating(fn, "input", input)
    if weight.dim() != 2:
        raise ValueError(
            f"{fn}: weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    if input.dim() < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{fn}: input's last dimension must be in_features = {weight.shape[1]} "
            f"(weight shape {tuple(weight.shape)}), got input shape {tuple(input.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{fn}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def query_key(fn: str, query: object, key: object) -> None:
    """Check attention's query (..., L, E) and key (..., S, E)."""
    tensor(fn, "query", query)
    tensor(fn, "key", key)
    floating(fn, "query", query)
    for name, t in (("query", query), ("key", key)):
        if t.dim() < 2:
            raise ValueError(f"{fn}: {name} must be at least 2-D (..., length, width), got shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{fn}: query and key must have the same width (last dimension), got "
            f"query {tuple(query.shape)} (width {query.shape[-1]}) and key "
            f"{tuple(key.shape)} (width {key.shape[-1]})"
        )


def attention_value(fn: str, key: torch.Tensor, value: object) -> None:
    """Check attention's value (..., S, Ev): one row per key."""
    tensor(fn, "value", value)
    if value.dim() < 2 or value.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"{fn}: value must have as many rows as key ({key.shape[-2]}), "
            f"got value shape {tuple(value.shape)} and key shape {tuple(key.shape)}"
        )


def attention_mask(fn: str, attn_mask: object, is_causal: bool) -> None:
    """Check attention's mask: a tensor or None, and not together with is_causal."""
    tensor(fn, "attn_mask", attn_mask, optional=True)
    if is_causal and attn_mask is not None:
        raise ValueError(f"{fn}: give attn_mask or is_causal=True, not both")


def input_shape(fn: str, value: object) -> tuple[int, ...]:
    """A (C, H, W) or (B, C, H, W) shape of positive ints, as (B, C, H, W)."""
    shape = tuple(value) if isinstance(value, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) not in (3, 4) or not all(_is_int(s) and s > 0 for s in shape):
        raise ValueError(
            f"{fn}: input_shape must be (C, H, W) or (B, C, H, W) with positive integers, got {value!r}"
        )
    return shape if len(shape) == 4 else (1,) + shape


def module(fn: str, name: str, value: object) -> None:
    """Raise TypeError unless `value` is a torch.nn.Module."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{fn}: {name} must be a torch.nn.Module, got {type(value).__name__}")


# -- checking once ------------------------------------------------------------------------


class ChecksInput:
    """Mixin for a layer that checks its input when `check_input` is true (the default)."""

    check_input: bool = True


def trust_inner_layers(model: nn.Module) -> nn.Module:
    """Switch off the input checks of every layer inside `model`; `model` checks once.

    A model calls this at the end of its constructor. Layers added later (an exercise
    that swaps in a fresh Conv2d, say) check their input until it is called again; an
    inner part called on its own (`model.features(x)`) checks nothing, so call the model,
    or set `check_input = True` on the layer you call.

    Returns:
        The same model.
    """
    for submodule in model.modules():
        if submodule is not model and isinstance(submodule, ChecksInput):
            submodule.check_input = False
    return model
