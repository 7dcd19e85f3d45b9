"""Drawing helpers for chapter 1 (convolutional networks).

Every picture in the chapter is drawn by code: a kernel sliding over a feature map
(the input in green, the kernel in yellow, the output cell it makes in red), the three
padding modes, max and average pooling on a small grid, the activation functions with
their gradients, and a conv-pool-conv-pool-fully-connected pipeline drawn as boxes with
their shapes. The convolution arithmetic follows Dumoulin & Visin, "A guide to
convolution arithmetic for deep learning" (arXiv 1603.07285).

The sliding picture counts the kernel's positions by sliding it; it does not use the
output-size formula, so the tests can check one against the other.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

INPUT_COLOUR = "#b7e4b0"    # green: the feature map
PAD_COLOUR = "#eeeeee"      # grey: zero padding
KERNEL_COLOUR = "#ffd84d"   # yellow: the cells under the kernel
OUTPUT_COLOUR = "#f4a6a6"   # red: the output cell being computed
DONE_COLOUR = "#fbe3e3"     # pale red: output cells already computed
EMPTY_COLOUR = "#ffffff"


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def kernel_positions(n: int, k: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> list[int]:
    """Top-left corners (in padded coordinates) where a k-wide kernel fits, along one axis.

    Found by sliding the kernel, one stride at a time, until it falls off the padded
    input; the length of the list is the output size.
    """
    n = _check_int("n", n, 1)
    k = _check_int("kernel_size", k, 1)
    stride = _check_int("stride", stride, 1)
    padding = _check_int("padding", padding, 0)
    dilation = _check_int("dilation", dilation, 1)
    last = n + 2 * padding - 1          # last index of the padded input
    span = dilation * (k - 1)           # distance from first to last kernel tap
    positions = []
    start = 0
    while start + span <= last:
        positions.append(start)
        start += stride
    return positions


@dataclass
class ConvPicture:
    """What `draw_conv_step` drew, so tests and widgets can read it back."""

    out_size: int
    kernel_cells: set[tuple[int, int]] = field(default_factory=set)   # padded coords
    output_cell: tuple[int, int] | None = None
    value: float | None = None


def _cell(ax: Axes, row: int, col: int, x0: float, colour: str, gid: str,
          text: str = "", lw: float = 1.0, ls: str = "-", fontsize: float = 9) -> None:
    rect = Rectangle((x0 + col, -row - 1), 1, 1, facecolor=colour, edgecolor="#444444",
                     linewidth=lw, linestyle=ls)
    rect.set_gid(gid)
    ax.add_patch(rect)
    if text:
        ax.text(x0 + col + 0.5, -row - 0.5, text, ha="center", va="center",
                fontsize=fontsize)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}".rstrip("0")


def draw_conv_step(ax: Axes, n: int = 5, k: int = 3, stride: int = 1, padding: int = 0,
                   dilation: int = 1, out_pos: tuple[int, int] | None = (0, 0),
                   values: np.ndarray | None = None, kernel: np.ndarray | None = None,
                   fontsize: float = 9) -> ConvPicture:
    """Draw an n x n input (plus padding), the kernel at one position, and the output grid.

    Args:
        ax: the axes to draw on.
        n, k, stride, padding, dilation: the convolution's geometry (square).
        out_pos: (row, col) of the output cell being computed; None draws no kernel.
        values: optional (n, n) input values written in the cells.
        kernel: optional (k, k) weights; written small in the highlighted cells, and
            with `values` the output cells up to `out_pos` show their values.

    Returns:
        A ConvPicture with the output size and the highlighted cells.
    """
    positions = kernel_positions(n, k, stride, padding, dilation)
    m = len(positions)
    size = n + 2 * padding
    if values is not None and np.shape(values) != (n, n):
        raise ValueError(f"draw_conv_step: values must have shape ({n}, {n}), "
                         f"got {np.shape(values)}")
    if kernel is not None and np.shape(kernel) != (k, k):
        raise ValueError(f"draw_conv_step: kernel must have shape ({k}, {k}), "
                         f"got {np.shape(kernel)}")
    if out_pos is not None and m > 0 and not (0 <= out_pos[0] < m and 0 <= out_pos[1] < m):
        raise ValueError(f"draw_conv_step: out_pos must lie in a {m} x {m} output, "
                         f"got {out_pos}")
    padded = None
    if values is not None:
        padded = np.zeros((size, size))
        padded[padding:padding + n, padding:padding + n] = values

    picture = ConvPicture(out_size=m)
    if out_pos is not None and m > 0:
        r0, c0 = positions[out_pos[0]], positions[out_pos[1]]
        picture.kernel_cells = {(r0 + a * dilation, c0 + b * dilation)
                                for a in range(k) for b in range(k)}
        picture.output_cell = tuple(out_pos)

    for r in range(size):
        for c in range(size):
            inside = padding <= r < padding + n and padding <= c < padding + n
            under = (r, c) in picture.kernel_cells
            colour = KERNEL_COLOUR if under else (INPUT_COLOUR if inside else PAD_COLOUR)
            gid = "kernel" if under else ("input" if inside else "padding")
            text = _fmt(padded[r, c]) if padded is not None else ("" if inside else "0")
            _cell(ax, r, c, 0.0, colour, gid, text, ls="-" if inside else ":",
                  fontsize=fontsize)
            if under and kernel is not None:
                a = (r - positions[out_pos[0]]) // dilation
                b = (c - positions[out_pos[1]]) // dilation
                ax.text(c + 0.92, -r - 0.92, f"×{_fmt(kernel[a, b])}", ha="right",
                        va="bottom", fontsize=fontsize * 0.65, color="#b00000")

    x_out = size + 2.0
    y_shift = -(size - m) / 2          # centre the output grid vertically
    outputs = None
    if padded is not None and kernel is not None and m > 0:
        outputs = np.array([[sum(padded[pr + a * dilation, pc + b * dilation] * kernel[a, b]
                                 for a in range(k) for b in range(k))
                             for pc in positions] for pr in positions])
    order = (out_pos[0] * m + out_pos[1]) if (out_pos is not None and m > 0) else -1
    for i in range(m):
        for j in range(m):
            now = (i, j) == picture.output_cell
            done = i * m + j < order
            colour = OUTPUT_COLOUR if now else (DONE_COLOUR if done else EMPTY_COLOUR)
            text = _fmt(outputs[i, j]) if (outputs is not None and (now or done)) else ""
            rect = Rectangle((x_out + j, -i - 1 + y_shift), 1, 1, facecolor=colour,
                             edgecolor="#444444", linewidth=1.5 if now else 1.0)
            rect.set_gid("output_now" if now else "output")
            ax.add_patch(rect)
            if text:
                ax.text(x_out + j + 0.5, -i - 0.5 + y_shift, text, ha="center",
                        va="center", fontsize=fontsize)
    if outputs is not None and picture.output_cell is not None:
        picture.value = float(outputs[picture.output_cell])
    if picture.output_cell is not None:
        rows = [r for r, _ in picture.kernel_cells]
        cols = [c for _, c in picture.kernel_cells]
        start = (max(cols) + 1, -(min(rows) + max(rows) + 1) / 2)
        end = (x_out + out_pos[1], -out_pos[0] - 0.5 + y_shift)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="->", mutation_scale=12,
                                     color="#b00000", linewidth=1.2,
                                     connectionstyle="arc3,rad=-0.2"))
    ax.set_xlim(-0.3, x_out + max(m, 1) + 0.3)
    ax.set_ylim(-size - 0.3, 0.3)
    ax.set_aspect("equal")
    ax.axis("off")
    return picture


def conv_steps_figure(n: int = 5, k: int = 3, stride: int = 1, padding: int = 0,
                      dilation: int = 1, values: np.ndarray | None = None,
                      kernel: np.ndarray | None = None, max_panels: int = 9,
                      panel_size: float = 2.6) -> Figure:
    """A grid of panels: the kernel at each output position in turn (row by row)."""
    m = len(kernel_positions(n, k, stride, padding, dilation))
    if m == 0:
        raise ValueError(f"conv_steps_figure: a {k}x{k} kernel (dilation {dilation}) does "
                         f"not fit a {n}x{n} input with padding {padding}")
    steps = [(i, j) for i in range(m) for j in range(m)][:max_panels]
    ncols = min(m, len(steps)) if m > 1 else 1
    nrows = -(-len(steps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols * 1.5,
                                                    panel_size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, pos in zip(axes.flat, steps):
        pic = draw_conv_step(ax, n, k, stride, padding, dilation, pos, values, kernel)
        title = f"output {pos}"
        if pic.value is not None:
            title += f" = {_fmt(pic.value)}"
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def padding_figure(n: int = 4, k: int = 3) -> Figure:
    """Valid, same and full padding side by side, with the output size of each."""
    k = _check_int("kernel_size", k, 1)
    if k % 2 == 0:
        raise ValueError(f"padding_figure: use an odd kernel size (same padding is "
                         f"symmetric only for odd k), got {k}")
    modes = [("valid", 0), ("same", (k - 1) // 2), ("full", k - 1)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (name, p) in zip(axes, modes):
        pic = draw_conv_step(ax, n, k, padding=p, out_pos=(0, 0))
        ax.set_title(f"{name}: padding {p} per side\n{n}x{n} input -> "
                     f"{pic.out_size}x{pic.out_size} output", fontsize=11)
    fig.tight_layout()
    return fig


def pooling_figure(x: np.ndarray, k: int = 2) -> Figure:
    """A small grid, its k x k windows coloured, and the max- and average-pooled outputs."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[0] % k or x.shape[1] % k:
        raise ValueError(f"pooling_figure: x must be 2-D with sides divisible by {k}, "
                         f"got shape {x.shape}")
    h, w = x.shape
    blocks = x.reshape(h // k, k, w // k, k)                       # (h/k, k, w/k, k)
    pooled = {"max pooling": blocks.max(axis=(1, 3)), "average pooling": blocks.mean(axis=(1, 3))}
    palette = ["#b7e4b0", "#ffd84d", "#9ecae1", "#f4a6a6", "#d9b3ff", "#ffcc99"]

    def colour(i: int, j: int) -> str:
        return palette[(i * (w // k) + j) % len(palette)]

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8),
                             gridspec_kw={"width_ratios": [w, w // k + 1, w // k + 1]})
    for r in range(h):
        for c in range(w):
            _cell(axes[0], r, c, 0, colour(r // k, c // k), "input", _fmt(x[r, c]), fontsize=12)
    axes[0].set_title(f"input {h}x{w}, {k}x{k} windows")
    for ax, (name, y) in zip(axes[1:], pooled.items()):
        for i in range(h // k):
            for j in range(w // k):
                _cell(ax, i, j, 0, colour(i, j), "pooled", _fmt(y[i, j]), fontsize=12)
        ax.set_title(f"{name} -> {h // k}x{w // k}")
    for ax, width in zip(axes, [w, w // k, w // k]):
        ax.set_xlim(-0.2, width + 0.2)
        ax.set_ylim(-h - 0.2, 0.2)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.tight_layout()
    return fig


ACTIVATIONS = {"ReLU": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def activation_figure(lo: float = -5.0, hi: float = 5.0, steps: int = 401) -> Figure:
    """ReLU, sigmoid and tanh (left) and their derivatives found by autograd (right)."""
    x = torch.linspace(lo, hi, steps, requires_grad=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, fn in ACTIVATIONS.items():
        y = fn(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        left.plot(x.detach(), y.detach(), label=name)
        right.plot(x.detach(), grad, label=name)
    left.set_title("activation f(x)")
    right.set_title("gradient f'(x), computed by autograd")
    for ax in (left, right):
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.axvline(0, color="grey", linewidth=0.6)
        ax.set_xlabel("x")
        ax.legend()
    fig.tight_layout()
    return fig


def layer_shapes(model: torch.nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """Run a zero input through the top-level children of `model`, recording each output shape.

    Returns [("input", shape), (child name + class, shape), ...] without the batch axis.
    """
    if len(input_shape) != 3:
        raise ValueError(f"layer_shapes: input_shape must be (C, H, W), got {input_shape}")
    x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    rows = [("input", tuple(input_shape))]
    with torch.no_grad():
        for name, child in model.named_children():
            x = child(x)
            rows.append((f"{name}: {type(child).__name__}", tuple(x.shape[1:])))
    return rows


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _stage_name(layer: torch.nn.Module) -> str | None:
    """The pipeline label of a layer that changes the data's shape or content, else None."""
    if isinstance(layer, torch.nn.Conv2d):
        kh, kw = _pair(layer.kernel_size)
        return f"conv {kh}x{kw}"
    if isinstance(layer, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
        kh, kw = _pair(layer.kernel_size)
        kind = "max" if isinstance(layer, torch.nn.MaxPool2d) else "avg"
        return f"{kind} pool {kh}x{kw}"
    if isinstance(layer, torch.nn.Flatten):
        return "flatten"
    if isinstance(layer, torch.nn.Linear):
        return "fully connected"
    return None


def pipeline_stages(model: torch.nn.Module, input_shape: tuple[int, ...]
                    ) -> list[tuple[str, tuple[int, ...]]]:
    """The stages of a plain CNN for `pipeline_figure`, picked by layer type.

    Convolutions, poolings, flattening and fully connected layers become stages; an
    activation (ReLU, tanh, ...) joins the stage before it ("conv 3x3 + ReLU"), and other
    layers (batch norm, dropout) are skipped. Returns [("input", shape), (label, shape), ...].
    """
    children = list(model.children())
    if all(_stage_name(child) is None for child in children):
        raise ValueError("pipeline_stages: the model has no Conv2d, pooling, Flatten or Linear "
                         f"child; its children are {[type(c).__name__ for c in children]}")
    shapes = layer_shapes(model, input_shape)        # shapes[i + 1] is children[i]'s output
    stages = [shapes[0]]
    for i, child in enumerate(children):
        name = _stage_name(child)
        if name is not None:
            stages.append((name, shapes[i + 1][1]))
        elif type(child).__module__.startswith("torch.nn.modules.activation") and len(stages) > 1:
            label, _ = stages[-1]
            stages[-1] = (f"{label} + {type(child).__name__}", shapes[i + 1][1])
    return stages


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def pipeline_figure(stages: list[tuple[str, tuple[int, ...]]]) -> Figure:
    """Feature maps as stacked boxes (height ~ spatial size, depth ~ channels), ops on arrows.

    `stages` is a list of (operation that produced it, shape); shapes are (C, H, W) for
    feature maps and (D,) for vectors. Typically the output of `layer_shapes`, keeping
    only the stages worth drawing.
    """
    if not stages:
        raise ValueError("pipeline_figure: stages must not be empty")
    fig, ax = plt.subplots(figsize=(2.4 * len(stages) + 0.5, 3.2))
    gap = 1.7                           # room between boxes for the arrow and its label
    x = 0.0
    max_h = max(s[1][1] if len(s[1]) == 3 else 1 for s in stages)
    for idx, (op, shape) in enumerate(stages):
        if len(shape) == 3:
            c, h, _ = shape
            height = 2.2 * (h / max_h) ** 0.5
            layers = int(min(6, 1 + np.log2(max(c, 1))))
            for layer in range(layers - 1, -1, -1):
                rect = Rectangle((x + 0.12 * layer, -height / 2 + 0.12 * layer), 0.9 * height,
                                 height, facecolor=INPUT_COLOUR if idx == 0 else "#9ecae1",
                                 edgecolor="#333333", linewidth=0.8)
                rect.set_gid("stage")
                ax.add_patch(rect)
            width = 0.9 * height + 0.12 * (layers - 1)
        else:
            height = 0.6 + 1.6 * min(1.0, shape[0] / 800)
            rect = Rectangle((x, -height / 2), 0.35, height, facecolor="#f4a6a6",
                             edgecolor="#333333", linewidth=0.8)
            rect.set_gid("stage")
            ax.add_patch(rect)
            width = 0.35
        ax.text(x + width / 2, -1.55, _shape_text(shape), ha="center", va="top", fontsize=9)
        if idx > 0:
            ax.annotate("", xy=(x - 0.15, 0), xytext=(x - gap + 0.15, 0),
                        arrowprops={"arrowstyle": "->", "color": "#333333"})
            ax.text(x - gap / 2, 0.12, op.replace(" + ", "\n+ "), ha="center",
                    va="bottom", fontsize=8.5)
        x += width + gap
    ax.set_xlim(-0.2, x - gap + 0.3)
    ax.set_ylim(-2.0, 2.0)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    return fig


def param_counts(model: torch.nn.Module) -> list[tuple[str, int]]:
    """(module name, number of its own parameters) for every module that has some."""
    rows = []
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own:
            rows.append((f"{name} ({type(module).__name__})", own))
    return rows


def param_bar_chart(model: torch.nn.Module) -> Figure:
    """A horizontal bar per layer with its parameter count and share of the total."""
    rows = param_counts(model)
    if not rows:
        raise ValueError("param_bar_chart: the model has no parameters")
    total = sum(n for _, n in rows)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.2))
    names = [name for name, _ in rows][::-1]
    counts = [n for _, n in rows][::-1]
    bars = ax.barh(names, counts, color="#9ecae1", edgecolor="#333333")
    for bar, n in zip(bars, counts):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {n:,} ({100 * n / total:.1f}%)", va="center", fontsize=9)
    ax.set_xlabel("parameters")
    ax.set_xlim(0, max(counts) * 1.35)
    ax.set_title(f"where the {total:,} parameters live")
    fig.tight_layout()
    return fig


def filter_gallery(image: torch.Tensor, kernels: dict[str, torch.Tensor],
                   responses: dict[str, torch.Tensor]) -> Figure:
    """The image and its response to each kernel, with the kernel printed in the title."""
    if image.ndim != 2:
        raise ValueError(f"filter_gallery: image must be 2-D (H, W), got shape {tuple(image.shape)}")
    n = len(kernels) + 1
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(image.detach().cpu().numpy(), cmap="gray")
    axes.flat[0].set_title("input (grey levels)")
    for ax, (name, kern) in zip(list(axes.flat)[1:], kernels.items()):
        resp = responses[name].detach().cpu().numpy()
        signed = abs(float(kern.sum())) < 1e-6     # edge detectors: show the sign
        lim = float(np.abs(resp).max())
        if signed:
            ax.imshow(resp, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            ax.imshow(np.clip(resp, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0)
        rows = "\n".join(" ".join(f"{v:5.2f}" for v in row.tolist()) for row in kern)
        ax.set_title(f"{name}\n{rows}" if kern.shape[0] <= 3 else name,
                     fontsize=9, family="monospace")
    fig.tight_layout()
    return fig


def feature_rows_figure(rows: dict[str, torch.Tensor], col_titles: list[str] | None = None,
                        size: float = 1.8) -> Figure:
    """Rows of single-channel images (one row per entry, each (C, H, W)), sizes may differ
    between rows; each row is titled on its left, each image shown at the same panel size."""
    if not rows:
        raise ValueError("feature_rows_figure: rows must not be empty")
    for name, maps in rows.items():
        if maps.dim() != 3:
            raise ValueError(f"feature_rows_figure: row {name!r} must be (C, H, W), "
                             f"got shape {tuple(maps.shape)}")
    ncols = max(len(maps) for maps in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols, size * len(rows) + 0.4),
                             squeeze=False)
    # column titles go on the first row that fills every column; about 11 characters of
    # 9-point text fit in one inch of panel
    chars = max(6, int(11 * size))
    # column titles go on the first row that fills every column
    title_row = next(r for r, maps in enumerate(rows.values()) if len(maps) == ncols)
    for r, (name, maps) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(maps):
                ax.imshow(maps[c].detach().cpu().float().numpy(), cmap="gray")
                if r == title_row and col_titles is not None and c < len(col_titles):
                    # wrapped to the panel's width, so neighbouring titles never overlap
                    ax.set_title(textwrap.fill(col_titles[c], width=chars), fontsize=9)
            else:
                ax.axis("off")
        h, w = maps.shape[-2:]
        axes[r, 0].set_ylabel(f"{name}\n{h}x{w}", fontsize=9)
    fig.tight_layout()
    return fig


def receptive_field_figure(image: torch.Tensor, sizes: list[tuple[str, int]], gradient: torch.Tensor,
                           window: tuple[tuple[int, int], tuple[int, int]]) -> Figure:
    """Left: `image` (C, H, W) with one square per layer, its receptive field, around the
    centre of `window`. Right: log |gradient| of that unit over the input (H, W), with
    `window` (rows, columns, first and last inclusive) drawn as the computed receptive field."""
    if image.dim() != 3 or gradient.shape != image.shape[-2:]:
        raise ValueError("receptive_field_figure: image must be (C, H, W) and gradient (H, W) of the same "
                         f"size, got {tuple(image.shape)} and {tuple(gradient.shape)}")
    if not sizes:
        raise ValueError("receptive_field_figure: sizes must name at least one layer")
    (top, bottom), (left, right) = window
    cy, cx = (top + bottom) / 2, (left + right) / 2
    fig, (ax_img, ax_grad) = plt.subplots(1, 2, figsize=(10, 5.2))
    picture = image.detach().cpu().float()
    if picture.shape[0] == 1:
        ax_img.imshow(picture[0].numpy(), cmap="gray")
    else:
        ax_img.imshow(picture.permute(1, 2, 0).clamp(0, 1).numpy())
    colours = plt.cm.plasma(np.linspace(0.0, 0.85, len(sizes)))
    for (name, r), colour in zip(sizes, colours):
        ax_img.add_patch(Rectangle((cx - r / 2, cy - r / 2), r, r, fill=False, edgecolor=colour,
                                   linewidth=1.6, gid="rf-square", label=f"{name}: {r} px"))
    ax_img.legend(loc="upper left", fontsize=8, framealpha=0.85, title="receptive field after",
                  title_fontsize=8)
    ax_img.set_title("receptive field of the centre unit, layer by layer", fontsize=10)
    grad = gradient.detach().cpu().float()
    shown = np.ma.masked_where(grad.numpy() == 0, np.log10(grad.clamp_min(1e-30).numpy()))
    ax_grad.imshow(np.ones(grad.shape), cmap="gray", vmin=0, vmax=1)
    im = ax_grad.imshow(shown, cmap="viridis")
    ax_grad.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                                edgecolor="red", linestyle="--", linewidth=1.4, gid="rf-window",
                                label="computed receptive field"))
    ax_grad.legend(loc="upper left", fontsize=8)
    fig.colorbar(im, ax=ax_grad, shrink=0.8, label="log10 |gradient| (white: exactly 0)")
    ax_grad.set_title("measured: pixels that move the centre unit", fontsize=10)
    for ax in (ax_img, ax_grad):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
