"""Convolution arithmetic: how big the output is and how much padding each mode adds.

Follows Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
(arXiv 1603.07285). Along one axis of size n, a kernel of size k dilated by d
covers d(k - 1) + 1 pixels, so with p pixels of padding on each side and stride s

    output = floor((n + 2p - d(k - 1) - 1) / s) + 1.

The padding modes, per side:
    "valid": none, the kernel only visits positions where it fits;
    "same":  d(k - 1) in total, so the output has the input's size at stride 1;
             for an even kernel the odd pixel goes at the end (after), as in torch;
    "full":  d(k - 1) on each side, every position where kernel and input overlap
             at all; the output has n + d(k - 1) pixels.
"""
from __future__ import annotations

from labcode import validate
from labcode.validate import PADDING_MODES


def padding_amount(mode: str | int, kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """Pixels of padding (before, after) along one axis.

    Args:
        mode: "valid", "same", "full", or an int p for p pixels on each side.
        kernel_size: the kernel's size k along this axis.
        dilation: the kernel's dilation d along this axis.

    Returns:
        (before, after): pixels added at the start and at the end of the axis.
    """
    validate.positive_int("padding_amount", "kernel_size", kernel_size)
    validate.positive_int("padding_amount", "dilation", dilation)
    if isinstance(mode, bool):
        raise TypeError(f"padding_amount: mode must be a string or an int, got {mode!r}")
    if isinstance(mode, int):
        validate.int_at_least("padding_amount", "padding", mode, 0)
        return mode, mode
    if not isinstance(mode, str):
        raise TypeError(
            f"padding_amount: mode must be one of {PADDING_MODES} or an int, "
            f"got {type(mode).__name__}"
        )
    span = dilation * (kernel_size - 1)  # pixels the kernel reaches beyond its first one
    if mode == "valid":
        return 0, 0
    if mode == "same":
        return span // 2, span - span // 2
    if mode == "full":
        return span, span
    raise ValueError(f"padding_amount: mode must be one of {PADDING_MODES} or an int, got {mode!r}")


def conv_output_size(
    n: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
) -> int:
    """Output size along one axis of a convolution or pooling window.

    Args:
        n: input size along the axis.
        kernel_size: kernel size k.
        stride: step s between windows.
        padding: pixels p on each side, or "valid", "same" (stride 1 only), "full".
        dilation: spacing d between kernel taps.

    Returns:
        floor((n + before + after - d(k - 1) - 1) / s) + 1, which is
        floor((n + 2p - d(k - 1) - 1) / s) + 1 for an int padding.
    """
    fn = "conv_output_size"
    validate.positive_int(fn, "n", n)
    validate.positive_int(fn, "stride", stride)
    validate.padding_mode(fn, padding, stride)
    before, after = padding_amount(padding, kernel_size, dilation)
    reach = dilation * (kernel_size - 1) + 1  # pixels one window covers
    if n + before + after < reach:
        raise ValueError(
            f"{fn}: the kernel covers {reach} pixels, more than the padded input "
            f"({n} + {before} + {after} = {n + before + after})"
        )
    return (n + before + after - reach) // stride + 1


def conv_padding(
    fn: str, padding: object, kernel: tuple[int, int], dilation: tuple[int, int],
    stride: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Any accepted `padding` argument as (top, bottom, left, right) pixels."""
    if isinstance(padding, str):
        validate.padding_mode(fn, padding, stride)
        top, bottom = padding_amount(padding, kernel[0], dilation[0])
        left, right = padding_amount(padding, kernel[1], dilation[1])
        return top, bottom, left, right
    ph, pw = validate.pair(fn, "padding", padding, minimum=0)
    return ph, ph, pw, pw


def as_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An int or a pair of ints as (h, w), for arguments already checked."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])
