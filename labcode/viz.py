"""Pictures of training and of what a network sees: curves, confusion matrices,
misclassified images, image grids, first-layer kernels and feature maps.

Every function returns the matplotlib Figure it drew (so a notebook can save it and a
test can inspect it) and works headless with the Agg backend. Kernel pictures follow
Krizhevsky, Sutskever & Hinton (NeurIPS 2012, fig. 3), which showed AlexNet's 96
first-layer filters; feature maps follow Zeiler & Fergus, "Visualizing and
Understanding Convolutional Networks" (ECCV 2014).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def _figure(**kwargs):
    # pyplot's figure() registers with the notebook backend so the picture shows inline.
    import matplotlib.pyplot as plt
    return plt.figure(**kwargs)


def _history_dict(history) -> dict:
    if hasattr(history, "to_dict"):
        return history.to_dict()
    if isinstance(history, dict):
        return history
    raise TypeError(f"plot_history: expected a History or dict, got {type(history).__name__}")


def plot_history(history):
    """Loss and accuracy per epoch, training against validation."""
    values = _history_dict(history)
    train_loss = values.get("train_loss", [])
    if not train_loss:
        raise ValueError("plot_history: the history holds no finished epoch")
    epochs = np.arange(1, len(train_loss) + 1)
    fig = _figure(figsize=(9, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, values.get(f"train_{key}", []), marker="o", label="train")
        val = values.get(f"val_{key}", [])
        if val:
            ax.plot(epochs[:len(val)], val, marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion(labels, preds, classes: Sequence[str] | None = None, *,
                   normalize: bool = False):
    """Confusion matrix: row = true class, column = predicted class.

    Args:
        labels, preds: class indices (N,).
        classes: class names; default 0..K-1.
        normalize: show each row as fractions of that class.
    """
    labels = torch.as_tensor(labels).long().flatten()
    preds = torch.as_tensor(preds).long().flatten()
    if labels.shape != preds.shape:
        raise ValueError(f"plot_confusion: labels and preds differ in length: "
                         f"{len(labels)} and {len(preds)}")
    k = len(classes) if classes is not None else int(max(labels.max(), preds.max())) + 1
    matrix = confusion_matrix(labels, preds, k).double()
    if normalize:
        matrix = matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.5 * k + 2)
    fig = _figure(figsize=(size, size))
    ax = fig.subplots()
    image = ax.imshow(matrix.numpy(), cmap="Blues")
    names = list(classes) if classes is not None else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        top = matrix.max().item() or 1
        for i in range(k):
            for j in range(k):
                v = matrix[i, j].item()
                ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center",
                        va="center", fontsize=8, color="white" if v > top / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (K, K): entry [i, j] = samples of class i predicted as j."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes ** 2).view(num_classes, num_classes)


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) tensor -> array imshow understands, scaled to [0, 1]."""
    image = image.detach().cpu().float()
    if image.dim() == 3 and image.shape[0] == 1:
        image = image[0]
    if image.dim() == 3:
        image = image.permute(1, 2, 0)
    lo, hi = image.min(), image.max()
    if lo < 0 or hi > 1:
        image = (image - lo) / (hi - lo + 1e-12)
    return image.numpy()


def show_images(images, titles: Sequence[str] | None = None, *, ncols: int = 8,
                cmap: str = "gray", size: float = 1.4):
    """A grid of images (N, C, H, W) or (N, H, W); each rescaled to [0, 1] if needed."""
    images = torch.as_tensor(images)
    if images.dim() not in (3, 4):
        raise ValueError(f"show_images: expected (N, C, H, W) or (N, H, W), "
                         f"got shape {tuple(images.shape)}")
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(size * ncols, size * nrows + (0.3 * nrows if titles else 0)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_hwc(images[i]), cmap=cmap)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    fig.tight_layout()
    return fig


def show_misclassified(images, labels, preds, n: int = 16,
                       classes: Sequence[str] | None = None):
    """The first `n` images whose prediction is wrong, titled "true -> predicted"."""
    labels, preds = torch.as_tensor(labels).cpu(), torch.as_tensor(preds).cpu()
    wrong = torch.nonzero(labels != preds).flatten()[:n]
    name = (lambda c: classes[c]) if classes is not None else str
    titles = [f"{name(int(labels[i]))} -> {name(int(preds[i]))}" for i in wrong]
    if len(wrong) == 0:
        fig = _figure(figsize=(3, 1))
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return fig
    return show_images(torch.as_tensor(images)[wrong.to(torch.as_tensor(images).device)].cpu(),
                       titles)


def show_kernels(weight: torch.Tensor, *, ncols: int = 8):
    """First-layer filters (out, in, kH, kW): RGB when in = 3, else channel 0 in grey."""
    weight = torch.as_tensor(weight).detach().cpu()
    if weight.dim() != 4:
        raise ValueError(f"show_kernels: expected a conv weight (out, in, kH, kW), "
                         f"got shape {tuple(weight.shape)}")
    kernels = weight if weight.shape[1] == 3 else weight[:, :1]
    # Each filter scaled to [0, 1] on its own, as AlexNet's figure shows them.
    lo = kernels.amin(dim=(1, 2, 3), keepdim=True)
    hi = kernels.amax(dim=(1, 2, 3), keepdim=True)
    kernels = (kernels - lo) / (hi - lo + 1e-12)
    return show_images(kernels, ncols=ncols, cmap="gray", size=0.9)


def show_feature_maps(maps: torch.Tensor, n: int = 16, *, ncols: int = 8):
    """The first `n` channels of one sample's activations (C, H, W) or (1, C, H, W)."""
    maps = torch.as_tensor(maps).detach().cpu()
    if maps.dim() == 4:
        if maps.shape[0] != 1:
            raise ValueError(f"show_feature_maps: pass one sample, got a batch of "
                             f"{maps.shape[0]}; index it first (maps[0])")
        maps = maps[0]
    if maps.dim() != 3:
        raise ValueError(f"show_feature_maps: expected (C, H, W), got shape {tuple(maps.shape)}")
    return show_images(maps[:n].unsqueeze(1), titles=[f"ch {i}" for i in range(min(n, len(maps)))],
                       ncols=ncols, cmap="viridis")
