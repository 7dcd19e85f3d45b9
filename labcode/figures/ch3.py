"""Drawing helpers and small computations for chapter 3, the Vision Transformer.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition
at Scale", ICLR 2021 (arXiv 2010.11929). This module draws the chapter's pictures:

- the photograph cut into patches (`square_photo`, `draw_patch_grid`, `patches_figure`);
- the ViT overview of the paper's figure 1 (the lecture notes' figure 7), drawn as boxes
  and arrows (`vit_overview_figure`);
- what one encoder block costs as the image grows (`encoder_block_macs`, `cost_table`,
  `cost_figure`): attention is quadratic in the number of patch tokens;
- what a trained ViT learned: the cosine similarity of its position embeddings (the
  paper's figure 7, centre) and the class token's attention on test images, optionally
  rolled out through the blocks (Abnar & Zuidema, "Quantifying Attention Flow in
  Transformers", ACL 2020, arXiv 2005.00928), as the paper's figure 6 does;
- the chapter's experiments: accuracy against training-set size and against training
  compute (the paper's figures 3 and 5, the notes' figure 8, at course scale).

Every function returns what it drew (a Figure or numbers), so the tests can check it.
Figures are made with pyplot, so a notebook cell shows one with `plt.show()`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from labcode.models.vit import SIZES

VIT_BASE = SIZES["ViT-Base"]  # the paper's table 1 row the cost pictures use by default
COLOURS = {"cnn": "#1f77b4", "vit": "#d62728"}


def _check_image(name: str, image: object) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: image must be a torch.Tensor (C, H, W), got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{name}: image must be (C, H, W) with C = 1 or 3, got shape {tuple(image.shape)}")
    return image


def _check_positive(name: str, what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {what} must be a positive int, got {value!r}")
    return value


# --------------------------------------------------------------------------- patches


def square_photo(size: int = 224) -> torch.Tensor:
    """The Grace Hopper photograph, centre-cropped to a square and resized: (3, size, size) in [0, 1].

    224 x 224 is ViT-B/16's input: 14 x 14 = 196 patches of 16 x 16 pixels.
    """
    from labcode.data import photo

    _check_positive("square_photo", "size", size)
    image = photo()  # (3, H, W)
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[:, top:top + side, left:left + side]  # (3, side, side)
    image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[0]  # (3, size, size)
    return image.clamp(0, 1)


def _as_hwc(image: torch.Tensor) -> np.ndarray:
    pixels = image.detach().float().cpu().permute(1, 2, 0).numpy()  # (H, W, C)
    return pixels[..., 0] if pixels.shape[-1] == 1 else np.clip(pixels, 0, 1)


def draw_patch_grid(ax, image: torch.Tensor, patch_size: int, *, numbers: int = 0,
                    colour: str = "white") -> tuple[int, int]:
    """Show `image` (C, H, W) on `ax` with lines between its patch_size x patch_size patches.

    Pixels that do not fill a whole patch (when H or W is not a multiple of the patch
    size) are greyed out: a ViT would crop or resize them away. The first `numbers`
    patches, in sequence order (row by row), are outlined and numbered from 1.

    Returns:
        (rows, cols) of whole patches.
    """
    image = _check_image("draw_patch_grid", image)
    p = _check_positive("draw_patch_grid", "patch_size", patch_size)
    if isinstance(numbers, bool) or not isinstance(numbers, int) or numbers < 0:
        raise ValueError(f"draw_patch_grid: numbers must be an int >= 0, got {numbers!r}")
    _, h, w = image.shape
    rows, cols = h // p, w // p
    ax.imshow(_as_hwc(image), cmap="gray", extent=(0, w, h, 0), interpolation="nearest")
    for r in range(1, rows):
        ax.plot([0, cols * p], [r * p, r * p], color=colour, linewidth=0.6, gid="patch_line")
    for c in range(1, cols):
        ax.plot([c * p, c * p], [0, rows * p], color=colour, linewidth=0.6, gid="patch_line")
    if cols * p < w:
        ax.add_patch(Rectangle((cols * p, 0), w - cols * p, h, color="grey", alpha=0.7, gid="cut"))
    if rows * p < h:
        ax.add_patch(Rectangle((0, rows * p), cols * p, h - rows * p, color="grey", alpha=0.7, gid="cut"))
    for i in range(min(numbers, rows * cols)):
        r, c = divmod(i, cols)
        ax.add_patch(Rectangle((c * p, r * p), p, p, fill=False, edgecolor="yellow", linewidth=1.5,
                               gid="patch_outline"))
        ax.text(c * p + p / 2, r * p + p / 2, str(i + 1), ha="center", va="center", fontsize=8,
                color="yellow", fontweight="bold", gid="patch_number")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return rows, cols


def patches_figure(image: torch.Tensor, patch_size: int, show: int = 6) -> Figure:
    """The image in patches (the first `show` outlined), those patches one by one in
    sequence order, and the same patches flattened into vectors of C * p * p numbers."""
    from labcode.layers.attention import patchify

    image = _check_image("patches_figure", image)
    p = _check_positive("patches_figure", "patch_size", patch_size)
    show = _check_positive("patches_figure", "show", show)
    c, h, w = image.shape
    cropped = image[:, : h // p * p, : w // p * p]
    flat = patchify(cropped[None], p)[0]  # (N, C*p*p)
    show = min(show, flat.shape[0])
    fig = plt.figure(figsize=(11, 4.4))
    outer = fig.add_gridspec(1, 2, width_ratios=[1, 1.75], wspace=0.08)
    ax = fig.add_subplot(outer[0])
    draw_patch_grid(ax, image, p, numbers=show)
    ax.set_title(f"{h // p} x {w // p} = {(h // p) * (w // p)} patches of {p} x {p} pixels", fontsize=10)
    right = outer[1].subgridspec(2, show, height_ratios=[1, 1.3], hspace=0.45)
    for i in range(show):
        sub = fig.add_subplot(right[0, i])
        patch = flat[i].reshape(c, p, p)  # (C, p, p): the flattening undone
        sub.imshow(_as_hwc(patch), cmap="gray", interpolation="nearest", gid="patch")
        sub.set_title(f"patch {i + 1}", fontsize=9)
        sub.set_xticks([])
        sub.set_yticks([])
    strip = fig.add_subplot(right[1, :])
    # each patch as one row of its C*p*p numbers (colour = value)
    strip.imshow(flat[:show].numpy(), aspect="auto", cmap="viridis", interpolation="nearest", gid="flat")
    strip.set_yticks(range(show), [f"patch {i + 1}" for i in range(show)], fontsize=8)
    strip.set_xlabel(f"the {c * p * p} numbers of a flattened patch: channel, then row, then column", fontsize=9)
    strip.set_title("flattened: one vector per patch", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.92, bottom=0.13)
    return fig


# --------------------------------------------------------------------------- overview


def _box(ax, x, y, w, h, text, colour, gid, fontsize=9):
    ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, edgecolor="black", linewidth=0.8, gid=gid))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, gid=gid + "_text")


def _arrow(ax, start, end, gid="arrow"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, linewidth=0.9,
                                 color="black", gid=gid))


def vit_overview_figure(image: torch.Tensor | None = None, grid: int = 3) -> Figure:
    """The Vision Transformer in one picture (ViT paper, figure 1; the notes' figure 7).

    Left, bottom to top: the image cut into grid x grid patches, the patches in a row,
    the flattening and linear projection, the tokens with the class token in front and
    position numbers 0..N, the Transformer encoder, its final LayerNorm, the MLP head and
    the class. Right: one encoder block
    (pre-norm: LayerNorm, multi-head attention, residual; LayerNorm, MLP, residual).
    """
    grid = _check_positive("vit_overview_figure", "grid", grid)
    if image is None:
        image = square_photo(grid * 32)
    image = _check_image("vit_overview_figure", image)
    n = grid * grid
    fig = plt.figure(figsize=(11, 6.2))
    ax = fig.add_axes((0, 0, 0.72, 1))
    ax.set_xlim(-3.5, n + 4.2)
    ax.set_ylim(-0.3, 10.6)
    ax.axis("off")
    size = image.shape[-1] // grid * grid
    crop = image[:, :size, :size]
    p = size // grid
    # the image, cut into patches (bottom left)
    im_ax = fig.add_axes((0.01, 0.02, 0.12, 0.2))
    draw_patch_grid(im_ax, crop, p)
    im_ax.set_title("image", fontsize=9)
    # the patches in a row: the sequence, in row-major order
    step = (n + 1.6) / n
    centres = [1.6 + i * step for i in range(n)]
    for i, x in enumerate(centres):
        r, c = divmod(i, grid)
        patch = crop[:, r * p:(r + 1) * p, c * p:(c + 1) * p]
        ax.imshow(_as_hwc(patch), extent=(x - 0.4, x + 0.4, 0.3, 1.1), cmap="gray", gid="overview_patch")
    ax.set_xlim(-3.5, n + 4.2)
    ax.set_ylim(-0.3, 10.6)
    _arrow(ax, (-0.8, 0.7), (1.05, 0.7))
    ax.text(centres[-1] + 0.7, 0.7, "patches,\nrow by row", fontsize=8, va="center")
    for x in centres:
        _arrow(ax, (x, 1.15), (x, 2.0))
    _box(ax, centres[0] - 0.45, 2.05, centres[-1] - centres[0] + 0.9, 0.75,
         "flatten each patch, then one shared linear projection", "#fde0c5", "projection")
    # tokens: class token (position 0) plus one per patch, each with its position number
    token_x = [centres[0] - step] + centres
    for i, x in enumerate(token_x):
        if i > 0:
            _arrow(ax, (x, 2.85), (x, 3.45))
        colour = "#c9b3e6" if i == 0 else "#f4b6b6"
        _box(ax, x - 0.38, 3.5, 0.32, 0.6, str(i), "#e6e6e6", "position", fontsize=8)
        _box(ax, x + 0.02, 3.5, 0.36, 0.6, "*" if i == 0 else "", colour,
             "class_token" if i == 0 else "token", fontsize=11)
        _arrow(ax, (x, 4.15), (x, 4.85))
    ax.text(token_x[0] - 0.5, 3.8, "class token *", fontsize=8, ha="right", va="center", color="#5b3c88")
    ax.text(centres[-1] + 0.7, 3.8, "position\nembedding +\npatch token", fontsize=8, va="center")
    _box(ax, token_x[0] - 0.45, 4.9, centres[-1] - token_x[0] + 0.9, 1.3,
         "Transformer encoder (L blocks)", "#cfe3f5", "encoder", fontsize=11)
    # the encoder ends with a final LayerNorm, applied before the head reads the class token
    _arrow(ax, (token_x[0], 6.25), (token_x[0], 6.55))
    _box(ax, token_x[0] - 0.7, 6.6, 1.9, 0.55, "LayerNorm", "#eeeeee", "final_norm", fontsize=9)
    _arrow(ax, (token_x[0] + 0.25, 7.2), (token_x[0] + 0.25, 7.5))
    _box(ax, token_x[0] - 0.7, 7.55, 1.9, 0.7, "MLP head", "#d8efcf", "head", fontsize=10)
    _arrow(ax, (token_x[0] + 0.25, 8.3), (token_x[0] + 0.25, 8.85))
    ax.text(token_x[0] + 0.25, 9.2, "class: cat, dog, digit 7, ...", fontsize=9, ha="left")
    ax.text(centres[2], 7.5, "only the class token's final state\nis classified", fontsize=8, va="center")
    # one encoder block, on the right
    blk = fig.add_axes((0.74, 0.05, 0.24, 0.9))
    blk.set_xlim(0, 4)
    blk.set_ylim(0, 11)
    blk.axis("off")
    blk.add_patch(Rectangle((0.3, 0.9), 3.4, 9.2, facecolor="#f3f8fc", edgecolor="black",
                            linestyle="--", gid="block_frame"))
    blk.text(2, 10.4, "one encoder block (x L)", ha="center", fontsize=10)
    layers = [("LayerNorm", "#eeeeee", 1.7), ("multi-head\nself-attention", "#cfe3f5", 3.0),
              ("LayerNorm", "#eeeeee", 5.6), ("MLP (GELU)", "#d8efcf", 6.9)]
    for text, colour, y in layers:
        _box(blk, 1.0, y, 2.0, 0.9, text, colour, "block_layer")
    for y0, y1 in [(0.3, 1.65), (2.6, 2.95), (3.9, 4.55), (4.85, 5.55), (6.5, 6.85), (7.8, 8.45), (8.75, 10.0)]:
        _arrow(blk, (2, y0), (2, y1))
    for y in (4.7, 8.6):
        blk.add_patch(_circle(2, y))
        blk.text(2, y, "+", ha="center", va="center", fontsize=10, gid="residual")
    # residual connections: around attention and around the MLP
    blk.plot([2, 0.6, 0.6, 1.85], [1.3, 1.3, 4.7, 4.7], color="black", linewidth=0.9, gid="skip")
    blk.plot([2, 0.6, 0.6, 1.85], [5.2, 5.2, 8.6, 8.6], color="black", linewidth=0.9, gid="skip")
    return fig


def _circle(x: float, y: float):
    from matplotlib.patches import Circle

    return Circle((x, y), 0.15, facecolor="white", edgecolor="black", gid="residual_node")


# --------------------------------------------------------------------------- cost


def encoder_block_macs(tokens: int, hidden_dim: int, mlp_dim: int) -> dict[str, int]:
    """Multiply-adds of one pre-norm encoder block on a sequence of `tokens` tokens.

    Returns the parts and their sum: "qkv" (3 n D^2), "scores" (Q K^T, n^2 D),
    "weighted_sum" (weights times V, n^2 D), "out_proj" (n D^2), "mlp" (2 n D M) and
    "total". Element-wise work (LayerNorm, softmax, GELU, residuals) is not counted.
    """
    n = _check_positive("encoder_block_macs", "tokens", tokens)
    d = _check_positive("encoder_block_macs", "hidden_dim", hidden_dim)
    m = _check_positive("encoder_block_macs", "mlp_dim", mlp_dim)
    parts = {"qkv": 3 * n * d * d, "scores": n * n * d, "weighted_sum": n * n * d,
             "out_proj": n * d * d, "mlp": 2 * n * d * m}
    parts["total"] = sum(parts.values())
    return parts


def cost_table(image_sizes: Sequence[int], patch_size: int = 16, hidden_dim: int = VIT_BASE.hidden_dim,
               mlp_dim: int = VIT_BASE.mlp_dim) -> list[dict[str, int]]:
    """For each image side: patches N, tokens N + 1, attention-matrix entries (N + 1)^2
    per head, and the multiply-adds of one encoder block (total and the n^2 part)."""
    p = _check_positive("cost_table", "patch_size", patch_size)
    rows = []
    for size in image_sizes:
        _check_positive("cost_table", "image size", size)
        if size % p:
            raise ValueError(f"cost_table: image size {size} must be a multiple of patch_size={p}")
        n = (size // p) ** 2
        macs = encoder_block_macs(n + 1, hidden_dim, mlp_dim)
        rows.append({"image_size": size, "patches": n, "tokens": n + 1, "attention_entries": (n + 1) ** 2,
                     "block_macs": macs["total"], "quadratic_macs": macs["scores"] + macs["weighted_sum"]})
    return rows


def cost_figure(rows: Sequence[Mapping[str, int]], patch_size: int = 16) -> Figure:
    """Two log-log panels from `cost_table` rows: tokens against image side, and one
    block's multiply-adds split into the part linear in N and the quadratic part."""
    if not rows:
        raise ValueError("cost_figure: rows must not be empty")
    sizes = [r["image_size"] for r in rows]
    fig = plt.figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    left.loglog(sizes, [r["tokens"] for r in rows], "o-", color="#444444", gid="tokens")
    left.set_xlabel("image side (pixels)")
    left.set_ylabel("tokens N + 1")
    left.set_title(f"sequence length, {patch_size} x {patch_size} patches", fontsize=10)
    linear = [r["block_macs"] - r["quadratic_macs"] for r in rows]
    right.loglog(sizes, [r["block_macs"] for r in rows], "o-", color="black", label="whole block", gid="total")
    right.loglog(sizes, linear, "s--", color=COLOURS["cnn"], label="projections and MLP (~ N)", gid="linear")
    right.loglog(sizes, [r["quadratic_macs"] for r in rows], "^--", color=COLOURS["vit"],
                 label="attention scores and sum (~ N²)", gid="quadratic")
    right.set_xlabel("image side (pixels)")
    right.set_ylabel("multiply-adds of one encoder block")
    right.set_title("cost of one encoder block", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- what a ViT learned


def position_similarity_figure(similarity: torch.Tensor) -> Figure:
    """The paper's figure 7 (centre): tile (i, j) shows the cosine similarity between the
    position embedding of patch (i, j) and those of all patches, as a g x g map."""
    if not isinstance(similarity, torch.Tensor) or similarity.dim() != 4 \
            or len(set(similarity.shape)) != 1:
        shape = tuple(similarity.shape) if isinstance(similarity, torch.Tensor) else type(similarity).__name__
        raise ValueError(f"position_similarity_figure: expected a (g, g, g, g) tensor, got {shape}")
    g = similarity.shape[0]
    sim = similarity.detach().float().cpu().numpy()
    fig = plt.figure(figsize=(6.4, 6))
    axes = fig.subplots(g, g, squeeze=False)
    image = None
    for i in range(g):
        for j in range(g):
            ax = axes[i][j]
            image = ax.imshow(sim[i, j], vmin=-1, vmax=1, cmap="viridis", gid="similarity")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(str(i + 1), fontsize=8, rotation=0, labelpad=8)
            if i == g - 1:
                ax.set_xlabel(str(j + 1), fontsize=8)
    fig.supxlabel("input patch column", fontsize=9)
    fig.supylabel("input patch row", fontsize=9)
    fig.subplots_adjust(left=0.09, right=0.86, bottom=0.08, top=0.97, wspace=0.08, hspace=0.08)
    bar = fig.add_axes((0.89, 0.2, 0.025, 0.6))
    fig.colorbar(image, cax=bar, label="cosine similarity")
    return fig


def attention_rollout(maps: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """How much each token's final state draws on each input token, through all blocks.

    Abnar & Zuidema (2020): average each block's attention over heads, mix in the
    identity for the residual connection (residual * I + (1 - residual) * A, rows still
    summing to 1), and multiply the blocks' matrices from the first to the last.

    Args:
        maps: one (B, h, T, T) attention tensor per block, as `VisionTransformer.attention_maps`.
        residual: weight of the identity (0 gives the plain product of attention matrices).

    Returns:
        (B, T, T); row 0 is the class token's attention on every input token.
    """
    if not maps:
        raise ValueError("attention_rollout: maps must hold at least one (B, h, T, T) tensor")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"attention_rollout: residual must be in [0, 1], got {residual}")
    result = None
    for a in maps:
        if not isinstance(a, torch.Tensor) or a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"attention_rollout: each map must be (B, h, T, T), got {shape}")
        mean = a.mean(dim=1)  # (B, T, T): heads averaged
        eye = torch.eye(mean.shape[-1], dtype=mean.dtype, device=mean.device)
        mixed = residual * eye + (1 - residual) * mean  # (B, T, T), rows sum to 1
        result = mixed if result is None else mixed @ result  # later blocks act on earlier ones
    return result


def class_attention_figure(images: torch.Tensor, attention: torch.Tensor,
                           titles: Sequence[str] | None = None) -> Figure:
    """Each image above the class token's attention over its patches, upsampled to the
    image and laid over it.

    Args:
        images: (B, C, H, W) in any range (each is rescaled to [0, 1] for display).
        attention: (B, N) attention of the class token on the N patches (class token
            itself left out), N a square number.
        titles: one title per image.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("class_attention_figure: images must be (B, C, H, W)")
    if not isinstance(attention, torch.Tensor) or attention.dim() != 2 or attention.shape[0] != images.shape[0]:
        shape = tuple(attention.shape) if isinstance(attention, torch.Tensor) else type(attention).__name__
        raise ValueError(f"class_attention_figure: attention must be (B={images.shape[0]}, N), got {shape}")
    b, n = attention.shape
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"class_attention_figure: N={n} patches must form a square grid")
    h, w = images.shape[-2:]
    fig = plt.figure(figsize=(1.3 * b, 2.9))
    axes = fig.subplots(2, b, squeeze=False)
    for i in range(b):
        x = images[i].detach().float().cpu()
        x = (x - x.min()) / (x.max() - x.min() + 1e-8)
        heat = attention[i].detach().float().cpu().reshape(1, 1, g, g)
        heat = F.interpolate(heat, size=(h, w), mode="nearest")[0, 0]  # (H, W)
        heat = heat / (heat.max() + 1e-12)
        axes[0][i].imshow(_as_hwc(x), cmap="gray", gid="image")
        axes[1][i].imshow(_as_hwc(x), cmap="gray")
        axes[1][i].imshow(heat.numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1, gid="attention")
        if titles is not None:
            axes[0][i].set_title(titles[i], fontsize=8)
        for ax in (axes[0][i], axes[1][i]):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("test image", fontsize=8)
    axes[1][0].set_ylabel("attention", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- experiments


def summarise(results: Sequence[Mapping], x: str, y: str = "acc",
              group: str = "model") -> dict[str, tuple[list, list, list]]:
    """Group result rows by `group` and `x`: for each group, sorted x values, the mean of
    `y` and its spread (min, max) over the rows (seeds) with that x."""
    values: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for row in results:
        values[row[group]][row[x]].append(float(row[y]))
    out = {}
    for name, by_x in values.items():
        xs = sorted(by_x)
        means = [float(np.mean(by_x[v])) for v in xs]
        spread = [(min(by_x[v]), max(by_x[v])) for v in xs]
        out[name] = (xs, means, spread)
    return out


def data_size_figure(results: Sequence[Mapping], labels: Mapping[str, str] | None = None) -> Figure:
    """Test accuracy against training-set size: one line per model (mean over seeds,
    shaded from the worst to the best seed). Rows need "model", "n_train", "acc"."""
    if not results:
        raise ValueError("data_size_figure: results must not be empty")
    fig = plt.figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    for name, (xs, means, spread) in summarise(results, "n_train").items():
        colour = COLOURS.get(name)
        label = (labels or {}).get(name, name)
        ax.plot(xs, [100 * m for m in means], "o-", color=colour, label=label, gid=f"line_{name}")
        ax.fill_between(xs, [100 * s[0] for s in spread], [100 * s[1] for s in spread], color=colour,
                        alpha=0.2, gid=f"band_{name}")
    ax.set_xscale("log")
    sizes = sorted({row["n_train"] for row in results})
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def compute_figure(results: Sequence[Mapping], labels: Mapping[str, str] | None = None) -> Figure:
    """Test accuracy against training compute (log x), one line per model size, coloured
    by family. Rows need "family", "size", "compute" (multiply-adds) and "acc"."""
    if not results:
        raise ValueError("compute_figure: results must not be empty")
    fig = plt.figure(figsize=(6.8, 4.2))
    ax = fig.add_subplot()
    markers = "os^Dv"
    runs: dict[tuple, list] = defaultdict(list)
    for row in results:
        runs[(row["family"], row["size"])].append(row)
    sizes: dict[str, list] = defaultdict(list)
    for family, size in runs:
        sizes[family].append(size)
    for (family, size), rows in runs.items():
        rows = sorted(rows, key=lambda r: r["compute"])
        k = sorted(sizes[family]).index(size)
        label = (labels or {}).get(family, family) + f", {size}"
        ax.plot([r["compute"] for r in rows], [100 * r["acc"] for r in rows], marker=markers[k % len(markers)],
                color=COLOURS.get(family), alpha=0.45 + 0.55 * (k + 1) / len(sizes[family]), label=label,
                gid=f"run_{family}_{size}")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (multiply-adds, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_distance_figure(distances: torch.Tensor, image_size: int, title: str,
                              receptive_fields: Mapping[str, Sequence[int]] | None = None) -> Figure:
    """Mean attention distance per block and head, one dot per head (the ViT paper's figure 7,
    right), beside the half-width of CNNs' receptive fields, layer by layer.

    Args:
        distances: (L, h) pixels, from `labcode.receptive_field.mean_attention_distance`.
        image_size: side of the images in pixels (the dotted line).
        title: the panel's title.
        receptive_fields: name -> receptive field (pixels) after each spatial layer of a CNN;
            its layers are spread evenly over the ViT's depth.
    """
    if not isinstance(distances, torch.Tensor) or distances.dim() != 2:
        raise ValueError("attention_distance_figure: distances must be an (L, h) tensor, got "
                         f"{tuple(distances.shape) if isinstance(distances, torch.Tensor) else type(distances).__name__}")
    _check_positive("attention_distance_figure", "image_size", image_size)
    layers, heads = distances.shape
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    d = distances.detach().cpu().float().numpy()
    for head in range(heads):
        ax.plot(np.arange(1, layers + 1), d[:, head], "o", alpha=0.75, gid="head",
                label="ViT heads" if head == 0 else None, color=plt.cm.tab10(head % 10))
    for (name, sizes), style in zip((receptive_fields or {}).items(), ("-", "--", "-.", ":")):
        x = np.linspace(1, layers, len(sizes))
        ax.plot(x, np.asarray(sizes, dtype=float) / 2, style, color="black", gid="rf",
                label=f"{name}: half the receptive field")
    ax.axhline(image_size, color="grey", linestyle=":", linewidth=1)
    ax.text(1, image_size, f" image side, {image_size} px", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("depth (ViT block; CNN layers spread over the same range)")
    ax.set_ylabel("pixels")
    ax.set_ylim(0, 1.15 * image_size)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
