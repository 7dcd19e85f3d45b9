"""An interactive explorer for the Vision Transformer's patch size (chapter 3).

A slider picks the patch size; the explorer redraws the photograph cut into patches and
reports what that choice costs: the sequence length N + 1 (patches plus the class
token), the size of each head's attention matrix, (N + 1)^2, and the multiply-adds of
one encoder block of ViT-Base (D = 768, MLP 3072), with the share of the part that grows
quadratically in N (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021,
arXiv 2010.11929).

In a notebook, use two cells: `explorer = PatchExplorer(); explorer.figure(); plt.show()` shows the
default picture as an ordinary figure (so a static page such as the book's website still
shows it), and `display(explorer.box)` shows the controls, which redraw below them. Only
APIs shared by ipywidgets 7 and 8 are used: SelectionSlider, Label, Output, VBox, observe.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from labcode.figures.ch3 import draw_patch_grid, encoder_block_macs, square_photo


def divisors(n: int, smallest: int = 2) -> list[int]:
    """The patch sizes that tile an n x n image exactly: divisors of n from `smallest` to n / 2."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"divisors: n must be an int >= 2, got {n!r}")
    return [p for p in range(smallest, n // 2 + 1) if n % p == 0]


def patch_report(image_size: int, patch_size: int, hidden_dim: int = 768, mlp_dim: int = 3072) -> dict[str, int | float]:
    """What a patch size means for a square image: grid side, patches, tokens,
    attention-matrix entries per head, one encoder block's multiply-adds and the
    fraction of them spent in the two N^2 products (scores and weighted sum)."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_report: patch_size must be a positive int, got {patch_size!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size % patch_size:
        raise ValueError(f"patch_report: image_size must be an int divisible by patch_size={patch_size}, "
                         f"got {image_size!r}")
    grid = image_size // patch_size
    tokens = grid * grid + 1
    macs = encoder_block_macs(tokens, hidden_dim, mlp_dim)
    return {"grid": grid, "patches": grid * grid, "tokens": tokens, "attention_entries": tokens * tokens,
            "block_macs": macs["total"],
            "quadratic_share": (macs["scores"] + macs["weighted_sum"]) / macs["total"]}


def report_text(report: dict) -> str:
    """One line summarising `patch_report`."""
    return (f"{report['grid']} x {report['grid']} = {report['patches']:,} patches -> sequence of "
            f"{report['tokens']:,} tokens; attention matrix {report['tokens']:,} x {report['tokens']:,} = "
            f"{report['attention_entries']:,} entries per head; one ViT-Base block: "
            f"{report['block_macs'] / 1e9:.2f} G multiply-adds, {100 * report['quadratic_share']:.0f}% "
            f"of them in the N² attention products")


class PatchExplorer:
    """A patch-size slider over the photograph, with the sequence length and the cost.

    Args:
        patch_size: the starting patch size (must divide `image_size`).
        image_size: side of the square photograph (224, ViT-B/16's input, by default).
        image: an image (C, S, S) to use instead of the photograph.
        hidden_dim, mlp_dim: the encoder block whose cost is reported (ViT-Base's).
    """

    def __init__(self, patch_size: int = 16, image_size: int = 224, image: torch.Tensor | None = None,
                 hidden_dim: int = 768, mlp_dim: int = 3072) -> None:
        import ipywidgets as widgets

        self.image = square_photo(image_size) if image is None else image
        if not isinstance(self.image, torch.Tensor) or self.image.dim() != 3 \
                or self.image.shape[-1] != self.image.shape[-2]:
            shape = tuple(self.image.shape) if isinstance(self.image, torch.Tensor) else type(self.image).__name__
            raise ValueError(f"PatchExplorer: image must be a square (C, S, S) tensor, got {shape}")
        self.image_size = self.image.shape[-1]
        self.options = divisors(self.image_size)
        if patch_size not in self.options:
            raise ValueError(f"PatchExplorer: patch_size must be one of {self.options} for a "
                             f"{self.image_size}x{self.image_size} image, got {patch_size!r}")
        self.hidden_dim, self.mlp_dim = hidden_dim, mlp_dim
        self.slider = widgets.SelectionSlider(options=self.options, value=patch_size, description="patch size",
                                              continuous_update=False)
        self.label = widgets.Label()
        self.out = widgets.Output()
        self.label.value = report_text(self.report())
        self.slider.observe(self._changed, names="value")
        self.box = widgets.VBox([self.slider, self.label, self.out])

    @property
    def patch_size(self) -> int:
        return self.slider.value

    def report(self) -> dict:
        return patch_report(self.image_size, self.patch_size, self.hidden_dim, self.mlp_dim)

    def figure(self, managed: bool = True) -> Figure:
        """The photograph in patches for the current slider value, with the report as title.

        Args:
            managed: make the figure with pyplot (shown by `plt.show()` or at the end of
                the cell); False gives a plain Figure for `display` inside the widget.
        """
        r = self.report()
        fig = plt.figure(figsize=(5.6, 6.0)) if managed else Figure(figsize=(5.6, 6.0))
        ax = fig.add_subplot()
        draw_patch_grid(ax, self.image, self.patch_size)
        ax.set_title(f"patch {self.patch_size} x {self.patch_size}: {r['patches']:,} patches, "
                     f"{r['tokens']:,} tokens\nattention matrix {r['tokens']:,}² = "
                     f"{r['attention_entries']:,} entries per head\none ViT-Base block: "
                     f"{r['block_macs'] / 1e9:.2f} G multiply-adds "
                     f"({100 * r['quadratic_share']:.0f}% in attention's N² part)", fontsize=9)
        fig.tight_layout()
        return fig

    def _changed(self, change) -> None:
        self.label.value = report_text(self.report())
        from IPython.display import display

        fig = self.figure(managed=False)
        with self.out:
            self.out.clear_output(wait=True)
            display(fig)
