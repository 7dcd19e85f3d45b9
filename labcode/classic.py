"""Image classification as it was done before AlexNet: hand-designed features, a linear classifier.

Until 2012 the ImageNet entries described an image with features designed by people, not
learned: histograms of local gradient orientations such as SIFT (Lowe, IJCV 2004) and HOG
(Dalal & Triggs, CVPR 2005), pooled over the image (bags of visual words, Fisher vectors),
and then trained only a linear classifier or a support vector machine on top. A CNN learns
the feature extractor as well (Krizhevsky et al., NeurIPS 2012, sections 1 and 6).

`gradient_histograms` is a small HOG-like descriptor: for every cell of a grid over the
image, a histogram of gradient orientations weighted by gradient strength.
`linear_classifier` fits a linear map from features to one-hot class targets by regularised
least squares (closed form, no training loop) and returns its accuracy on held-out images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def gradient_histograms(images: torch.Tensor, cells: int = 4, bins: int = 8) -> torch.Tensor:
    """A HOG-like descriptor of each image: (N, bins * cells * cells).

    Args:
        images: (N, 1, H, W), uint8 (0-255) or float.
        cells: the image is cut into cells x cells regions, one histogram each.
        bins: orientation bins over 0..180 degrees (the sign of a gradient is ignored).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"gradient_histograms: expected grey images (N, 1, H, W), got {shape}")
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")   # repeat the border: no edge at the frame
    gx = F.conv2d(x, SOBEL_X[None, None])                                # (N, 1, H, W)
    gy = F.conv2d(x, SOBEL_X.T[None, None])
    angle = torch.atan2(gy, gx) % math.pi                                # 0 .. pi
    which = (angle / math.pi * bins).long().clamp(max=bins - 1)          # (N, 1, H, W)
    votes = F.one_hot(which[:, 0], bins).permute(0, 3, 1, 2)             # (N, bins, H, W)
    votes = votes * torch.hypot(gx, gy)                                  # weighted by strength
    return F.adaptive_avg_pool2d(votes, cells).flatten(1)                # (N, bins*cells*cells)


def linear_classifier(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                      test_y: torch.Tensor, ridge: float = 1e-3) -> float:
    """Test accuracy of a linear classifier fitted by ridge regression to one-hot targets.

    Args:
        train_x, test_x: features (N, D), one row per image.
        train_y, test_y: int class labels (N,).
        ridge: weight of the penalty on the squared weights (keeps the solve well posed).
    """
    if train_x.dim() != 2 or test_x.dim() != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"linear_classifier: expected features (N, D) with the same D, got "
                         f"{tuple(train_x.shape)} and {tuple(test_x.shape)}")
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)         # standardise columns
    a = torch.cat([(train_x - mean) / std, torch.ones(len(train_x), 1)], dim=1).double()
    targets = F.one_hot(train_y, int(train_y.max()) + 1).double()       # (N, classes)
    w = torch.linalg.solve(a.T @ a + ridge * len(a) * torch.eye(a.shape[1], dtype=a.dtype),
                           a.T @ targets)                                # (D + 1, classes)
    b = torch.cat([(test_x - mean) / std, torch.ones(len(test_x), 1)], dim=1).double()
    return (b @ w).argmax(dim=1).eq(test_y).double().mean().item()
