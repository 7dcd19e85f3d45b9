"""An interactive explorer for convolution arithmetic (chapter 1).

Sliders for the input size, kernel size, stride, padding and dilation redraw a picture of
the (padded) input, the kernel at one position and the output grid, and a line that works
out the output size, floor((n + 2p - d(k - 1) - 1) / s) + 1 (Dumoulin & Visin, "A guide to
convolution arithmetic for deep learning", arXiv 1603.07285).

`conv_explorer()` first shows the default picture as an ordinary figure, so a static
page (the book's website) still shows it, and then the controls; `conv_picture()` draws
that picture alone. Only APIs shared by
ipywidgets 7 and 8 are used: IntSlider, Label, Output, VBox/HBox and `observe`.
"""
from __future__ import annotations

from matplotlib.figure import Figure

from labcode.figures.ch1 import ConvPicture, draw_conv_step, kernel_positions

LIMITS = {  # slider name: (description, min, max)
    "n": ("input n", 3, 12),
    "k": ("kernel k", 1, 7),
    "stride": ("stride s", 1, 4),
    "padding": ("padding p", 0, 4),
    "dilation": ("dilation d", 1, 3),
}


def output_size_text(n: int, k: int, stride: int, padding: int, dilation: int) -> str:
    """The output-size sum worked out, with the size found by sliding the kernel."""
    m = len(kernel_positions(n, k, stride, padding, dilation))
    if m == 0:
        reach = dilation * (k - 1) + 1
        return (f"no output: the kernel covers {reach} pixels, more than the padded "
                f"input's {n + 2 * padding}")
    return (f"output {m} x {m}:  floor(({n} + 2·{padding} - {dilation}·({k} - 1) - 1) / "
            f"{stride}) + 1 = {m}")


def conv_picture(n: int = 5, k: int = 3, stride: int = 1, padding: int = 0,
                 dilation: int = 1, position: int = 0) -> tuple[Figure, ConvPicture]:
    """One picture of the geometry with the kernel at output cell number `position`.

    Cells are numbered row by row; dots mark every top-left corner the kernel visits.
    """
    positions = kernel_positions(n, k, stride, padding, dilation)
    m = len(positions)
    size = n + 2 * padding
    fig = Figure(figsize=(min(11.0, 1.0 + 0.45 * (size + 2 + max(m, 1))),
                          min(6.5, 1.2 + 0.42 * size)))
    ax = fig.add_subplot()
    out_pos = divmod(min(position, m * m - 1), m) if m else None
    picture = draw_conv_step(ax, n, k, stride, padding, dilation, out_pos)
    for r in positions:
        for c in positions:
            ax.plot(c + 0.18, -r - 0.18, "o", color="#b00000", markersize=3, gid="start")
    ax.set_title(output_size_text(n, k, stride, padding, dilation), fontsize=10)
    fig.tight_layout()
    return fig, picture


class ConvExplorer:
    """Sliders, the output-size line and the redrawn picture (see `conv_explorer`)."""

    def __init__(self, n: int = 5, k: int = 3, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> None:
        import ipywidgets as widgets

        start = {"n": n, "k": k, "stride": stride, "padding": padding, "dilation": dilation}
        self.sliders = {}
        for name, (label, low, high) in LIMITS.items():
            value = start[name]
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"conv_explorer: {name} must be an int in [{low}, {high}], "
                                 f"got {value!r}")
            self.sliders[name] = widgets.IntSlider(value=value, min=low, max=high,
                                                   description=label, continuous_update=False)
        self.sliders["position"] = widgets.IntSlider(value=0, min=0, max=0,
                                                     description="output cell",
                                                     continuous_update=False)
        self.label = widgets.Label()
        self.out = widgets.Output()
        self.picture: ConvPicture | None = None
        self._live = False          # draw into `out` only after the first change
        self.refresh()
        for slider in self.sliders.values():
            slider.observe(self._changed, names="value")
        left = widgets.VBox([self.sliders[name] for name in ("n", "k", "stride")])
        right = widgets.VBox([self.sliders[name] for name in ("padding", "dilation", "position")])
        self.box = widgets.VBox([widgets.HBox([left, right]), self.label, self.out])

    def settings(self) -> dict[str, int]:
        return {name: slider.value for name, slider in self.sliders.items()}

    def refresh(self) -> Figure:
        """Recompute the picture and the output-size line from the sliders."""
        s = self.settings()
        geometry = {key: s[key] for key in LIMITS}
        m = len(kernel_positions(**geometry))
        self.sliders["position"].max = max(m * m - 1, 0)   # clamps the value as well
        fig, self.picture = conv_picture(**geometry, position=self.sliders["position"].value)
        self.label.value = output_size_text(**geometry)
        return fig

    def _changed(self, change) -> None:
        fig = self.refresh()
        if self._live:
            from IPython.display import display

            with self.out:
                self.out.clear_output(wait=True)
                display(fig)


def conv_explorer(n: int = 5, k: int = 3, stride: int = 1, padding: int = 0,
                  dilation: int = 1, picture: bool = True) -> ConvExplorer:
    """Show the default picture, then sliders that redraw it below.

    Args:
        n, k, stride, padding, dilation: the starting values of the sliders.
        picture: show the default picture first. A book page that shows it in a cell of
            its own (to give it a caption) passes False and gets the controls alone.

    Returns:
        The ConvExplorer (its `sliders`, `label` and `picture` can be read).
    """
    from IPython.display import display

    explorer = ConvExplorer(n, k, stride, padding, dilation)
    if picture:
        fig, _ = conv_picture(n, k, stride, padding, dilation)
        display(fig)
    explorer._live = True
    display(explorer.box)
    return explorer
