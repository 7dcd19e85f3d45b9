"""Count a model's parameters and multiply-adds, in total or layer by layer.

Papers report a network's cost as "FLOPs" but mean multiply-adds (MACs): AlexNet's 0.7 G,
EfficientNetV2-S's 8.8 B at 384 px (Tan & Le 2021, table 7), ViT-B/16's 17.6 G at 224 px.
torch's `torch.utils.flop_counter.FlopCounterMode` counts true floating-point operations,
two per multiply-add, in matrix products, convolutions and attention; this module halves
them. Element-wise work (ReLU, BatchNorm, pooling, residual additions) is not counted, as
in the papers.

Two traps are avoided here. torch's MultiheadAttention has an inference fast path
(eval mode, no autograd) that runs the whole attention as one fused kernel the counter
cannot see into; and on a CPU, `scaled_dot_product_attention` may call a fused kernel the
counter has no formula for. The count therefore runs with the fast path switched off and
attention computed by its plain math (two matrix products), so attention is counted.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from labcode import validate


@dataclass(frozen=True)
class Counts:
    """A model's size and cost for one input shape."""

    params: int
    macs: int  # multiply-adds, what papers call FLOPs

    @property
    def flops(self) -> int:
        """Floating-point operations: two per multiply-add."""
        return 2 * self.macs

    def __str__(self) -> str:
        return f"{self.params / 1e6:.2f} M parameters, {self.macs / 1e9:.3f} G multiply-adds"


@dataclass(frozen=True)
class LayerRow:
    """One line of a layer table."""

    name: str  # qualified name in the model, e.g. "features.0"
    type: str  # class name; "X (own)" for what module X computes outside its children
    output_shape: tuple[int, ...] | None
    params: int
    macs: int


@contextmanager
def _countable_attention() -> Iterator[None]:
    """Switch off MultiheadAttention's fused fast path and SDPA's fused kernels, then restore."""
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)


def _run(model: nn.Module, shape: tuple[int, ...]) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """One eval-mode forward pass; returns FLOPs per module name and output shapes."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = [(m, m.training) for m in model.modules()]
    shapes: dict[str, tuple[int, ...]] = {}
    names = {m: n for n, m in model.named_modules()}

    def record(module: nn.Module, inputs: tuple, output: object) -> None:
        out = output[0] if isinstance(output, (tuple, list)) and output else output
        if isinstance(out, Tensor):
            shapes[names[module]] = tuple(out.shape)

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    model.eval()  # batch norm uses its running statistics and does not update them
    try:
        x = torch.randn(shape, device=device, dtype=dtype)
        with torch.no_grad(), _countable_attention(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes:
            m.training = training
    # The counter names modules "<RootClass>.<qualified name>"; the root itself "<RootClass>".
    root = type(model).__name__
    flops: dict[str, int] = {}
    for key, per_op in counter.get_flop_counts().items():
        if key.startswith(root + "."):
            flops[key[len(root) + 1:]] = sum(per_op.values())
    flops[""] = counter.get_total_flops()
    return flops, shapes


def count(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> Counts:
    """Parameters and multiply-adds of one forward pass on an input of `input_shape`.

    The model runs once in eval mode on random data (its training flag and weights are
    left as they were). A model built on the "meta" device (`with torch.device("meta"):`)
    is counted from shapes alone, without memory or compute.

    Args:
        model: the network.
        input_shape: (C, H, W) for one image, or (B, C, H, W): MACs are for the whole batch.
    """
    validate.module("count", "model", model)
    shape = validate.input_shape("count", input_shape)
    flops, _ = _run(model, shape)
    params = sum(p.numel() for p in model.parameters())
    return Counts(params=params, macs=flops[""] // 2)


def layer_table(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224), depth: int | None = None) -> list[LayerRow]:
    """The model layer by layer: name, type, output shape, parameters and multiply-adds.

    Rows are the leaf modules (depth=None) or the modules `depth` levels below the model
    (depth=1: its children). Work a module does outside its children (MultiheadAttention's
    input projection and attention products, a ViT's class token) gets its own row, typed
    "X (own)", so the rows add up to the model's totals.

    Args:
        model: the network.
        input_shape: (C, H, W) or (B, C, H, W).
        depth: how many levels to descend; None for leaves.
    """
    validate.module("layer_table", "model", model)
    shape = validate.input_shape("layer_table", input_shape)
    if depth is not None:
        validate.positive_int("layer_table", "depth", depth)
    flops, shapes = _run(model, shape)
    rows: list[LayerRow] = []
    seen: set[int] = set()

    def new_params(params: Iterator[nn.Parameter]) -> int:
        total = 0
        for p in params:
            if id(p) not in seen:  # a shared parameter is counted once
                seen.add(id(p))
                total += p.numel()
        return total

    def visit(name: str, module: nn.Module, level: int) -> None:
        children = list(module.named_children())
        if not children or (depth is not None and level >= depth):
            rows.append(
                LayerRow(name, type(module).__name__, shapes.get(name), new_params(module.parameters()), flops.get(name, 0) // 2)
            )
            return
        prefix = f"{name}." if name else ""
        own_flops = flops.get(name, 0) - sum(flops.get(prefix + child, 0) for child, _ in children)
        own_params = new_params(module.parameters(recurse=False))
        if own_flops > 0 or own_params > 0:
            rows.append(LayerRow(name, f"{type(module).__name__} (own)", shapes.get(name), own_params, own_flops // 2))
        for child, sub in children:
            visit(prefix + child, sub, level + 1)

    visit("", model, 0)
    return rows


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def format_table(rows: Sequence[LayerRow]) -> str:
    """A plain-text table of `rows` with a totals line (exact counts, then rounded)."""
    header = ("layer", "type", "output shape", "params", "MACs")
    body = [
        (
            r.name or "(model)",
            r.type,
            "x".join(str(s) for s in r.output_shape) if r.output_shape else "-",
            f"{r.params:,}",
            f"{r.macs:,}",
        )
        for r in rows
    ]
    params = sum(r.params for r in rows)
    macs = sum(r.macs for r in rows)
    total = ("total", "", "", f"{params:,}", f"{macs:,}")
    widths = [max(len(line[i]) for line in [header, *body, total]) for i in range(5)]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [line[i].ljust(widths[i]) if i < 3 else line[i].rjust(widths[i]) for i in range(5)]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    lines = [fmt(header), rule, *(fmt(line) for line in body), rule, fmt(total)]
    lines.append(f"{_human(params)} parameters, {_human(macs)} multiply-adds ({_human(2 * macs)} FLOPs)")
    return "\n".join(lines)
