"""Drawing helpers for chapter 2 (AlexNet and EfficientNetV2).

Every picture is computed from labcode's own models, not typed in:

- `alexnet_towers_figure`: the 2012 AlexNet split over two GPUs (Krizhevsky, Sutskever &
  Hinton, NeurIPS 2012, fig. 2). Each layer appears once per tower with half of its
  channels; a layer whose convolution has groups=2 only reads its own tower, every other
  layer reads both, and those are the places where the GPUs communicate.
- `block_figure`: MBConv (Sandler et al. 2018; Tan & Le 2019) and Fused-MBConv (Tan & Le,
  EfficientNetV2, ICML 2021, fig. 2) drawn from the parts of real `labcode.layers` blocks,
  with the shape after each part.
- `training_error_figure`: training error against epochs for several runs (the AlexNet
  paper's fig. 1 experiment, ReLU against tanh).
- `timing_figure`: measured times of two blocks per stage, side by side.
- `top5_figure`: a photograph beside a bar chart of a classifier's five best guesses.

Each function returns a matplotlib Figure (made without pyplot's global state, so it works
headless) and tags the artists it draws with a `gid`, which the tests read back.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import nn

from labcode.functional.sizes import conv_output_size

TOWER_COLOURS = ("#cfe2f3", "#fce5cd")  # GPU 1 (top), GPU 2 (bottom)
CROSS_COLOUR = "#c0392b"  # arrows that carry data from one GPU to the other
OWN_COLOUR = "#555555"  # arrows that stay on one GPU
PART_COLOURS = {"expand": "#cfe2f3", "depthwise": "#d9ead3", "se": "#fff2cc",
                "project": "#f4cccc", "fused": "#d9d2e9"}


def _figure(**kwargs) -> Figure:
    fig = Figure(**kwargs)
    return fig


def _box(ax, x: float, y: float, w: float, h: float, text: str, colour: str, gid: str,
         fontsize: float = 8) -> None:
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                                facecolor=colour, edgecolor="#333333", linewidth=0.8, gid=gid))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, gid=gid + "-label")


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], colour: str, gid: str,
           style: str = "-|>", rad: float = 0.0) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=colour,
                                 linewidth=1.1, gid=gid, connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=0, shrinkB=0))


# ------------------------------------------------------------------ AlexNet's two towers


def alexnet_tower_layers(convs: Sequence, input_size: int = 227, hidden: int = 4096,
                         num_classes: int = 1000) -> list[dict]:
    """The 2012 AlexNet as the rows of its two-tower diagram.

    One dict per layer: name, channels (whole layer), size (output side), and `reads`:
    "own" when each tower reads only its own half of the previous layer (groups=2),
    "both" when it reads both halves (the GPUs exchange data), "input" for conv1 (both
    towers read the whole image). Sizes come from the conv and pool arithmetic.

    Args:
        convs: AlexNet's conv rows (`labcode.models.alexnet.PAPER_2012_CONVS`).
        input_size: side of the square input image.
        hidden: width of the two hidden fully connected layers.
        num_classes: outputs of the last layer.
    """
    if not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"alexnet_tower_layers: input_size must be a positive int, got {input_size!r}")
    rows = []
    size = input_size
    for i, row in enumerate(convs, start=1):
        size = conv_output_size(size, row.kernel_size, row.stride, row.padding)
        if row.pool is not None:
            size = conv_output_size(size, row.pool[0], row.pool[1])
        reads = "input" if i == 1 else ("own" if row.groups == 2 else "both")
        rows.append(dict(name=f"conv{i}", channels=row.out_channels, size=size, reads=reads))
    n = len(rows)
    rows.append(dict(name=f"fc{n + 1}", channels=hidden, size=1, reads="both"))
    rows.append(dict(name=f"fc{n + 2}", channels=hidden, size=1, reads="both"))
    rows.append(dict(name=f"fc{n + 3}", channels=num_classes, size=1, reads="both", single=True))
    return rows


def alexnet_towers_figure(convs: Sequence | None = None, input_size: int = 227,
                          hidden: int = 4096, num_classes: int = 1000) -> Figure:
    """The 2012 AlexNet on two GPUs: one row of boxes per GPU, red arrows where they talk.

    Each box shows a tower's share of a layer ("48 @ 55x55": 48 channels of 55x55). Grey
    arrows stay on one GPU (grouped convolution, groups=2); red arrows cross between GPUs.
    The last layer (the 1000 class scores) is drawn once.
    """
    if convs is None:
        from labcode.models.alexnet import PAPER_2012_CONVS
        convs = PAPER_2012_CONVS
    rows = alexnet_tower_layers(convs, input_size, hidden, num_classes)
    fig = _figure(figsize=(12.5, 4.2))
    ax = fig.add_subplot()
    ys = (1.0, -1.0)  # GPU 1 on top, GPU 2 below
    w, h, step = 1.05, 0.9, 1.35
    _box(ax, 0, 0, w, 1.3, f"image\n3 @ {input_size}x{input_size}", "#eeeeee", "input")
    for gpu, y in enumerate(ys):
        ax.text(-0.9, y, f"GPU {gpu + 1}", ha="right", va="center", fontsize=9, weight="bold")
    for i, row in enumerate(rows, start=1):
        x = i * step
        half = row["channels"] // 2
        shape = f"{row['size']}x{row['size']}" if row["size"] > 1 else ""
        if row.get("single"):
            _box(ax, x, 0, w, 1.3, f"{row['name']}\n{row['channels']}", "#eeeeee", "layer")
            for y in ys:
                _arrow(ax, ((i - 1) * step + w / 2, y), (x - w / 2, 0), CROSS_COLOUR, "cross")
            continue
        for gpu, y in enumerate(ys):
            label = f"{row['name']}\n{half}" + (f" @ {shape}" if shape else "")
            _box(ax, x, y, w, h, label, TOWER_COLOURS[gpu], "layer")
        prev_x = (i - 1) * step + w / 2
        for gpu, y in enumerate(ys):
            if row["reads"] == "input":
                _arrow(ax, (prev_x, 0), (x - w / 2, y), OWN_COLOUR, "from-input")
            else:
                _arrow(ax, (prev_x, y), (x - w / 2, y), OWN_COLOUR, "own")
                if row["reads"] == "both":
                    _arrow(ax, (prev_x, ys[1 - gpu]), (x - w / 2, y), CROSS_COLOUR, "cross")
    ax.plot([], [], color=OWN_COLOUR, label="stays on its GPU (groups=2)")
    ax.plot([], [], color=CROSS_COLOUR, label="crosses between the GPUs")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False, fontsize=9)
    ax.set_xlim(-1.6, (len(rows) + 0.6) * step)
    ax.set_ylim(-1.8, 1.7)
    ax.axis("off")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ MBConv and Fused-MBConv


def _conv_text(role: str, conv: nn.Conv2d) -> str:
    k = conv.kernel_size[0]
    stride = f", stride {conv.stride[0]}" if conv.stride[0] != 1 else ""
    if conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels:
        return f"depthwise conv {k}x{k}{stride}, {conv.out_channels} channels"
    return f"{role}: conv {k}x{k}{stride}, {conv.in_channels} -> {conv.out_channels}"


def block_parts(block: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """The parts of an MBConv or FusedMBConv, in order, with their text and output shape.

    Args:
        block: a `labcode.layers.MBConv` or `FusedMBConv`.
        input_shape: (C, H, W) of the block's input.
    """
    from labcode.layers.mbconv import FusedMBConv, MBConv

    if not isinstance(block, (MBConv, FusedMBConv)):
        raise TypeError(f"block_parts: expected an MBConv or FusedMBConv, got {type(block).__name__}")
    if len(input_shape) != 3:
        raise ValueError(f"block_parts: input_shape must be (C, H, W), got {tuple(input_shape)}")
    param = next(block.parameters())
    x = torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device)
    parts = []
    was_training = block.training
    block.eval()  # batch norm on one image: use the running statistics
    for role, module in block.parts().items():  # named by role, in the order of the forward pass
        with torch.no_grad():
            x = module(x)
        if role == "se":
            text = (f"squeeze-and-excitation\npool, {module.fc1.in_channels} -> {module.fc1.out_channels}"
                    f" -> {module.fc2.out_channels}, sigmoid gate")
        else:
            text = _conv_text(role, module[0]) + ("\nBN, SiLU" if len(module) > 2 else "\nBN, no activation")
        params = sum(p.numel() for p in module.parameters())
        parts.append(dict(role=role, text=text, shape=tuple(x.shape[1:]), params=params))
    block.train(was_training)
    return parts


def _draw_block(ax, block: nn.Module, input_shape: Sequence[int], title: str) -> list[dict]:
    parts = block_parts(block, input_shape)
    step = 1.25
    ax.text(0, 0.9, title, ha="center", va="bottom", fontsize=11, weight="bold")
    c, hh, ww = input_shape
    ax.text(0, 0.35, f"input {c}x{hh}x{ww}", ha="center", va="center", fontsize=8, gid="shape")
    y = 0.35
    for part in parts:
        _arrow(ax, (0, y - 0.15), (0, y - step + 0.4), OWN_COLOUR, "flow")
        y -= step
        _box(ax, 0, y, 3.0, 0.7, part["text"], PART_COLOURS[part["role"]], "part-" + part["role"])
        c, hh, ww = part["shape"]
        ax.text(1.6, y - 0.42, f"{c}x{hh}x{ww}", ha="left", va="center", fontsize=7, color="#666666",
                gid="shape")
    end = y - step
    _arrow(ax, (0, y - 0.28), (0, end + 0.15), OWN_COLOUR, "flow")
    ax.text(0, end, "output" + (" = input + branch" if block.use_residual else ""), ha="center",
            va="center", fontsize=8)
    if block.use_residual:
        ax.plot([-0.75, -1.9, -1.9], [0.35, 0.35, end], color="#2e75b6", linewidth=1.1)
        _arrow(ax, (-1.9, end), (-1.0, end), "#2e75b6", "residual")
        ax.text(-2.0, (0.35 + end) / 2, "identity\nshortcut", ha="right", va="center", fontsize=7,
                color="#2e75b6")
    return parts


def block_figure(mbconv: nn.Module, fused: nn.Module, input_shape: Sequence[int]) -> Figure:
    """MBConv and Fused-MBConv side by side, each part a box labelled with its convolution.

    Args:
        mbconv: a `labcode.layers.MBConv`.
        fused: a `labcode.layers.FusedMBConv` with the same input and output widths.
        input_shape: (C, H, W) entering both blocks.
    """
    fig = _figure(figsize=(10, 6.2))
    axes = fig.subplots(1, 2)
    for ax, block, title in zip(axes, (mbconv, fused), ("MBConv", "Fused-MBConv")):
        _draw_block(ax, block, input_shape, title)
        ax.set_xlim(-2.9, 2.4)
        ax.set_ylim(-5.9, 1.3)
        ax.axis("off")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ curves and bars


def training_error_figure(curves: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
                          target: float | None = None, xlabel: str = "epochs") -> Figure:
    """Training error against epochs: one colour per setting, one line per run (seed).

    Args:
        curves: setting name -> list of (epochs, errors) pairs, one per run; errors in [0, 1].
        target: draw a dashed line at this error (e.g. the error whose time is compared).
        xlabel: label of the x axis.
    """
    if not curves:
        raise ValueError("training_error_figure: curves is empty")
    fig = _figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for colour, (name, runs) in zip(colours, curves.items()):
        for i, (x, err) in enumerate(runs):
            if len(x) != len(err):
                raise ValueError(f"training_error_figure: run {i} of {name!r} has {len(x)} x values "
                                 f"and {len(err)} errors")
            ax.plot(x, 100 * np.asarray(err, dtype=float), color=colour, alpha=0.8,
                    label=name if i == 0 else None, gid=f"run-{name}")
    if target is not None:
        ax.axhline(100 * target, color="black", linestyle="--", linewidth=1, gid="target")
        ax.text(ax.get_xlim()[1], 100 * target, f" {100 * target:g}%", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training error (%)")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig


def timing_figure(labels: Sequence[str], times: Mapping[str, Sequence[float]], device: str) -> Figure:
    """Grouped bars of measured times (milliseconds), one group per stage.

    Args:
        labels: one label per group (e.g. "stage 1\\n24 ch, 192 px").
        times: block name -> times in milliseconds, one per label.
        device: the device the times were measured on, for the title.
    """
    for name, values in times.items():
        if len(values) != len(labels):
            raise ValueError(f"timing_figure: {name!r} has {len(values)} times for {len(labels)} labels")
    fig = _figure(figsize=(8.5, 3.8))
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(times))
    for i, (name, values) in enumerate(times.items()):
        ax.bar(x + (i - (len(times) - 1) / 2) * width, values, width, label=name, gid=f"bar-{name}")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("forward + backward (ms)")
    ax.set_title(f"one block per stage, measured on {device}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


def top5_figure(image: torch.Tensor, names: Sequence[str], probs: Sequence[float]) -> Figure:
    """A photograph (3, H, W) in [0, 1] beside a bar chart of the top-5 class probabilities."""
    if len(names) != len(probs):
        raise ValueError(f"top5_figure: {len(names)} names for {len(probs)} probabilities")
    fig = _figure(figsize=(9, 3.4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    left.imshow(image.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
    left.axis("off")
    y = np.arange(len(names))[::-1]
    right.barh(y, [100 * float(p) for p in probs], color="#2e75b6", gid="prob")
    right.set_yticks(y, names)
    right.set_xlabel("probability (%)")
    right.set_xlim(0, 100)
    fig.tight_layout()
    return fig
