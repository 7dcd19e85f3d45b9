"""labcode.classic: the HOG-like gradient histograms put each edge in the right orientation
bin and cell, and the least-squares linear classifier separates what is linearly separable."""
from __future__ import annotations

import pytest
import torch

from labcode.classic import gradient_histograms, linear_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


def edge_image(direction: str, size: int = 16) -> torch.Tensor:
    """One grey image, dark left (or top) half and bright right (or bottom) half."""
    img = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    if direction == "vertical":      # brightness changes along x: gradient angle 0
        img[..., size // 2:] = 255
    else:                            # brightness changes along y: gradient angle 90 degrees
        img[..., size // 2:, :] = 255
    return img


@pytest.mark.parametrize("direction, expected_bin", [("vertical", 0), ("horizontal", 4)])
def test_an_edge_votes_for_its_orientation_bin_only(direction, expected_bin):
    h = gradient_histograms(edge_image(direction), cells=2, bins=8).view(8, 2, 2)
    per_bin = h.sum(dim=(1, 2))
    assert per_bin[expected_bin] > 0
    assert torch.count_nonzero(per_bin) == 1


def test_the_histograms_keep_where_the_edge_is():
    h = gradient_histograms(edge_image("vertical"), cells=4, bins=8).view(8, 4, 4)
    columns = h[0].sum(dim=0)                # the edge lies between columns 1 and 2
    assert columns[1] > 0 and columns[2] > 0
    assert columns[0] == 0 and columns[3] == 0


def test_shape_and_input_checks():
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    assert gradient_histograms(x, cells=4, bins=8).shape == (5, 128)
    with pytest.raises(ValueError, match=r"expected grey images \(N, 1, H, W\), got \(5, 3, 8, 8\)"):
        gradient_histograms(torch.zeros(5, 3, 8, 8))


def test_linear_classifier_separates_separable_classes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    centres = 6 * torch.randn(3, 5, generator=g)
    labels = torch.randint(0, 3, (300,), generator=g)
    points = centres[labels] + torch.randn(300, 5, generator=g)
    assert linear_classifier(points[:200], labels[:200], points[200:], labels[200:]) == 1.0
    noise = torch.randn(300, 5, generator=g)
    assert linear_classifier(noise[:200], labels[:200], noise[200:], labels[200:]) < 0.6


def test_linear_classifier_rejects_mismatched_features():
    with pytest.raises(ValueError, match=r"same D, got \(4, 3\) and \(2, 5\)"):
        linear_classifier(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long),
                          torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
