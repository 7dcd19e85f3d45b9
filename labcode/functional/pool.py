"""Max and average pooling written from scratch.

A pooling window of size (kh, kw) slides over each channel with a stride and keeps
the largest value (max pooling) or the mean (average pooling). AlexNet's overlapping
max pool (Krizhevsky et al. 2012: window 3, stride 2) is the classic case.

Both are separable, which makes them cheap without looping over pixels: pool each
row over kw columns first, then pool those results over kh rows. The backward pass
is written by hand. For the average it spreads each output gradient evenly over its
window. For the maximum only the winning input gets the gradient; ties go to the
first maximum in row-major order (first by row, then by column), as torch does, and
that choice is separable too: the first row that holds the maximum, then the first
column of that row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labcode import validate
from labcode.functional.sizes import as_pair
from labcode.validate import IntPair


def max_pool2d(
    input: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    *, check: bool = True,
) -> torch.Tensor:
    """2-D max pooling; padding counts as minus infinity.

    Args:
        input: (N, C, H, W).
        kernel_size: window size, an int or (kh, kw).
        stride: step between windows; defaults to kernel_size.
        padding: pixels added on each side, at most half the window (as in torch).
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (N, C, H_out, W_out), H_out = floor((H + 2p - kh) / s) + 1.
    """
    if check:
        kernel, stride, padding = validate.pool_input("max_pool2d", input, kernel_size, stride, padding)
    else:
        kernel, padding = as_pair(kernel_size), as_pair(padding)
        stride = kernel if stride is None else as_pair(stride)
    x = input
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]), value=float("-inf"))
    return _MaxPool.apply(x, kernel, stride)


def avg_pool2d(
    input: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    *, check: bool = True,
) -> torch.Tensor:
    """2-D average pooling; padding counts as zeros in the mean (torch's default).

    Args:
        input: (N, C, H, W).
        kernel_size: window size, an int or (kh, kw).
        stride: step between windows; defaults to kernel_size.
        padding: zeros added on each side, at most half the window (as in torch).
        check: check the arguments first; a layer that has checked its input passes False.

    Returns:
        (N, C, H_out, W_out), H_out = floor((H + 2p - kh) / s) + 1.
    """
    if check:
        kernel, stride, padding = validate.pool_input("avg_pool2d", input, kernel_size, stride, padding)
    else:
        kernel, padding = as_pair(kernel_size), as_pair(padding)
        stride = kernel if stride is None else as_pair(stride)
    x = input
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    return _AvgPool.apply(x, kernel, stride)


def _columns(x, j, size, stride):
    """Columns j, j + stride, ... (`size` of them) of (..., W)."""
    return x[..., j: j + stride * (size - 1) + 1: stride]


def _rows(x, i, size, stride):
    """Rows i, i + stride, ... (`size` of them) of (..., H, W)."""
    return x[..., i: i + stride * (size - 1) + 1: stride, :]


class _MaxPool(torch.autograd.Function):
    """Separable max over a padded input: first across columns, then across rows."""

    @staticmethod
    def forward(ctx, x, kernel, stride):
        (kh, kw), (sh, sw) = kernel, stride
        n, c, hp, wp = x.shape
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        if not ctx.needs_input_grad[0]:  # inference: only the values, no winners to remember
            rows = _columns(x, 0, wo, sw).clone()  # (N, C, Hp, Wo)
            for j in range(1, kw):
                torch.maximum(rows, _columns(x, j, wo, sw), out=rows)
            out = _rows(rows, 0, ho, sh).clone()  # (N, C, Ho, Wo)
            for i in range(1, kh):
                torch.maximum(out, _rows(rows, i, ho, sh), out=out)
            return out
        # Each row's windows as a view (N, C, Hp, Wo, kw); max() returns the first winner.
        s_n, s_c, s_h, s_w = x.stride()
        row_windows = x.as_strided((n, c, hp, wo, kw), (s_n, s_c, s_h, s_w * sw, s_w), x.storage_offset())
        rows, col = row_windows.max(dim=-1)  # (N, C, Hp, Wo) each
        r_n, r_c, r_h, r_w = rows.stride()
        col_windows = rows.as_strided((n, c, ho, wo, kh), (r_n, r_c, r_h * sh, r_w, r_h))
        out, row = col_windows.max(dim=-1)  # (N, C, Ho, Wo) each
        ctx.save_for_backward(col, row)
        ctx.conf = (x.shape, stride)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        col, row = ctx.saved_tensors
        (n, c, hp, wp), (sh, sw) = ctx.conf
        ho, wo = row.shape[-2:]
        # The winner of output (r, s): row r*sh + row[r, s], then its column within that row.
        winner_row = row + torch.arange(0, sh * ho, sh, device=row.device).view(ho, 1)
        winner_col = col.gather(2, winner_row) + torch.arange(0, sw * wo, sw, device=row.device)
        winner = (winner_row * wp + winner_col).view(n, c, ho * wo)  # flat index into Hp*Wp
        grad_x = grad_out.new_zeros((n, c, hp * wp))
        grad_x.scatter_add_(2, winner, grad_out.reshape(n, c, ho * wo))  # overlapping windows add up
        return grad_x.view(n, c, hp, wp), None, None


class _AvgPool(torch.autograd.Function):
    """Separable mean over a zero-padded input: sum across columns, then across rows."""

    @staticmethod
    def forward(ctx, x, kernel, stride):
        (kh, kw), (sh, sw) = kernel, stride
        hp, wp = x.shape[-2:]
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        n, c = x.shape[:2]
        s_n, s_c, s_h, s_w = x.stride()
        row_windows = x.as_strided((n, c, hp, wo, kw), (s_n, s_c, s_h, s_w * sw, s_w), x.storage_offset())
        rows = row_windows.sum(dim=-1)  # (N, C, Hp, Wo): sums over each row's window
        r_n, r_c, r_h, r_w = rows.stride()
        col_windows = rows.as_strided((n, c, ho, wo, kh), (r_n, r_c, r_h * sh, r_w, r_h))
        out = col_windows.sum(dim=-1)  # (N, C, Ho, Wo)
        out /= kh * kw
        ctx.conf = (x.shape, kernel, stride)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        shape, (kh, kw), (sh, sw) = ctx.conf
        ho, wo = grad_out.shape[-2:]
        share = grad_out / (kh * kw)  # each input in the window gets an equal share
        grad_rows = share.new_zeros(shape[:3] + (wo,))  # (N, C, Hp, Wo)
        for i in range(kh):
            _rows(grad_rows, i, ho, sh).add_(share)
        grad_x = share.new_zeros(shape)  # (N, C, Hp, Wp)
        for j in range(kw):
            _columns(grad_x, j, wo, sw).add_(grad_rows)
        return grad_x, None, None
