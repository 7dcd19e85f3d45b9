"""An interactive explorer of compound scaling (chapter 2).

EfficientNet (Tan & Le, ICML 2019, arXiv 1905.11946, sec. 3.3) grows a network in three
directions at once: depth (layers per stage) by d, width (channels) by w and input
resolution by r. Its compound rule ties them to one coefficient phi,
d = 1.2^phi, w = 1.1^phi, r = 1.15^phi, chosen so that d * w^2 * r^2 is about 2: each
step of phi roughly doubles the multiply-adds. EfficientNetV2 (Tan & Le, ICML 2021, arXiv
2104.00298) scales its S model up to M and L in the same spirit, with a cap on the image
size and extra layers in the late stages.

`count_network` counts a network's parameters and multiply-adds from its stage rows in
closed form (milliseconds, so a slider can redraw at once); the tests check it against
`labcode.flops.count` on the real `labcode.models.EfficientNetV2`. `ScalingExplorer`
has sliders for d, w, r (and phi) that redraw the stages as bars and report the counts.
Only APIs shared by ipywidgets 7 and 8 are used (FloatSlider, Label, Output, VBox, observe).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from labcode.functional.sizes import conv_output_size
from labcode.layers.mbconv import round_to_multiple
from labcode.models.efficientnet import VARIANTS, Stage, scale_stages, scale_width

# EfficientNet V1's grid-searched constants (sec. 3.3): alpha * beta^2 * gamma^2 ~ 2.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
BASE_RESOLUTION = {"s": 384, "m": 480, "l": 480, "small": 28}  # evaluation sizes
LIMITS = {"depth": (0.5, 4.0), "width": (0.5, 3.0), "resolution": (0.25, 2.0), "phi": (0.0, 4.0)}


@dataclass(frozen=True)
class NetworkCounts:
    """Parameters and multiply-adds of a whole network at one resolution."""

    params: int
    macs: int


def _conv(c_in: int, c_out: int, k: int, size: int, stride: int = 1, groups: int = 1,
          bn: bool = True, bias: bool = False) -> tuple[int, int, int]:
    """(params, MACs, output side) of a 'same'-padded conv on a size x size input."""
    out = conv_output_size(size, k, stride, (k - 1) // 2)
    params = c_out * (c_in // groups) * k * k + (c_out if bias else 0) + (2 * c_out if bn else 0)
    macs = out * out * c_out * (c_in // groups) * k * k
    return params, macs, out


def _block(kind: str, c_in: int, c_out: int, expand: float, k: int, stride: int, se_ratio: float,
           size: int) -> tuple[int, int, int]:
    hidden = round_to_multiple(c_in * expand, 8)
    params = macs = 0
    if kind == "FusedMBConv" and hidden == c_in:
        if se_ratio > 0:  # the model refuses this row too (FusedMBConv raises the same way)
            raise ValueError(f"count_network: a FusedMBConv row that does not expand (expand_ratio="
                             f"{expand} keeps {c_in} channels) has no layer for squeeze-and-"
                             f"excitation; se_ratio must be 0, got {se_ratio}")
        return _conv(c_in, c_out, k, size, stride)  # a single kxk conv
    if kind == "FusedMBConv":
        p, m, size = _conv(c_in, hidden, k, size, stride)  # fused kxk expansion
        params, macs = params + p, macs + m
    else:
        if hidden != c_in:
            p, m, size = _conv(c_in, hidden, 1, size)  # expand 1x1
            params, macs = params + p, macs + m
        p, m, size = _conv(hidden, hidden, k, size, stride, groups=hidden)  # depthwise kxk
        params, macs = params + p, macs + m
    if se_ratio > 0:
        squeeze = max(1, int(c_in * se_ratio))
        params += 2 * hidden * squeeze + squeeze + hidden  # two 1x1 convs with bias
        macs += 2 * hidden * squeeze  # on the pooled (1 x 1) map
    p, m, size = _conv(hidden, c_out, 1, size)  # project 1x1, linear
    return params + p, macs + m, size


def count_network(stages: Sequence[Stage], head_channels: int, resolution: int,
                  in_channels: int = 3, num_classes: int = 1000, stem_stride: int = 2) -> NetworkCounts:
    """Parameters and multiply-adds of `labcode.models.EfficientNetV2(stages, ...)`, in closed form.

    Counts what `labcode.flops.count` counts: convolutions and the classifier (one MAC per
    weight per output position); not batch norm, activations or pooling.

    Args:
        stages: the stage rows.
        head_channels: width of the 1x1 head conv.
        resolution: side of the square input image.
        in_channels: channels of the input image.
        num_classes: outputs of the classifier.
        stem_stride: stride of the 3x3 stem conv.
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"count_network: resolution must be a positive int, got {resolution!r}")
    if not stages:
        raise ValueError("count_network: stages must hold at least one Stage row, got none")
    params, macs, size = _conv(in_channels, stages[0].in_channels, 3, resolution, stem_stride)
    for s in stages:
        for i in range(s.layers):
            p, m, size = _block(s.block, s.in_channels if i == 0 else s.out_channels, s.out_channels,
                                s.expand_ratio, s.kernel, s.stride if i == 0 else 1, s.se_ratio, size)
            params, macs = params + p, macs + m
    p, m, size = _conv(stages[-1].out_channels, head_channels, 1, size)
    params += p + head_channels * num_classes + num_classes
    macs += m + head_channels * num_classes
    return NetworkCounts(params, macs)


def compound_multipliers(phi: float) -> tuple[float, float, float]:
    """EfficientNet's (depth, width, resolution) multipliers for compound coefficient phi."""
    return ALPHA ** phi, BETA ** phi, GAMMA ** phi


def scaled_network(variant: str = "s", depth: float = 1.0, width: float = 1.0,
                   resolution: float = 1.0) -> tuple[list[Stage], int, int]:
    """A variant's stage rows, head width and input side after scaling by d, w and r.

    Channels are rounded to multiples of 8 and layers rounded up, as in EfficientNet.
    """
    if variant not in VARIANTS or variant not in BASE_RESOLUTION:
        raise ValueError(f"variant must be one of {sorted(BASE_RESOLUTION)}, got {variant!r}")
    for name, value in (("depth", depth), ("width", width), ("resolution", resolution)):
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"scaled_network: {name} multiplier must be a number > 0, got {value!r}")
    v = VARIANTS[variant]
    stages = scale_stages(v.stages, width_mult=width, depth_mult=depth)
    side = max(32, int(round(BASE_RESOLUTION[variant] * resolution)))
    return stages, scale_width(v.head_channels, width), side


def scaling_figure(variant: str = "s", depth: float = 1.0, width: float = 1.0,
                   resolution: float = 1.0) -> Figure:
    """Channels and layers per stage, base (outlined) against scaled (filled), with the counts."""
    base_stages, base_head, base_side = scaled_network(variant)
    stages, head, side = scaled_network(variant, depth, width, resolution)
    base = count_network(base_stages, base_head, base_side)
    now = count_network(stages, head, side)
    fig = Figure(figsize=(10, 3.9))
    left, right = fig.subplots(1, 2)
    x = np.arange(1, len(stages) + 1)
    for ax, key, label in ((left, "out_channels", "channels"), (right, "layers", "layers (blocks)")):
        ax.bar(x, [getattr(s, key) for s in stages], 0.6, color="#2e75b6", label="scaled", gid="scaled")
        ax.bar(x, [getattr(s, key) for s in base_stages], 0.6, fill=False, edgecolor="black",
               linestyle="--", label=f"EfficientNetV2-{variant.upper()}", gid="base")
        ax.set_xticks(x, [f"{i}\n{'F' if s.block == 'FusedMBConv' else 'MB'}" for i, s in zip(x, stages)])
        ax.set_xlabel("stage (F: Fused-MBConv, MB: MBConv)")
        ax.set_ylabel(label)
    left.legend(fontsize=8)
    fig.suptitle(
        f"d={depth:.2f}, w={width:.2f}, r={resolution:.2f}: {side}x{side} input, "
        f"{now.params / 1e6:.1f} M parameters, {now.macs / 1e9:.2f} G multiply-adds "
        f"({now.macs / base.macs:.2f}x the base's {base.macs / 1e9:.2f} G)", fontsize=10)
    fig.tight_layout()
    return fig


class ScalingExplorer:
    """Sliders for the depth, width and resolution multipliers (and phi) over a variant's stages.

    Use two cells: `explorer = ScalingExplorer(); explorer.figure()` shows the default
    picture (also on a static page), then `display(explorer.box)` shows the controls and a
    picture that follows them.

    Args:
        variant: the base network, "s", "m", "l" or "small".
        depth, width, resolution: the starting multipliers.
    """

    def __init__(self, variant: str = "s", depth: float = 1.0, width: float = 1.0,
                 resolution: float = 1.0) -> None:
        import ipywidgets as widgets

        scaled_network(variant, depth, width, resolution)  # validates the arguments
        self.variant = variant
        start = {"depth": depth, "width": width, "resolution": resolution, "phi": 0.0}
        self.sliders = {}
        for name, (low, high) in LIMITS.items():
            if not low <= start[name] <= high:
                raise ValueError(f"ScalingExplorer: {name} must lie in [{low}, {high}], got {start[name]}")
            self.sliders[name] = widgets.FloatSlider(
                value=start[name], min=low, max=high, step=0.05, description=name if name != "phi" else "phi (all)",
                continuous_update=False, readout_format=".2f")
        self.out = widgets.Output()
        self.label = widgets.Label()
        self._busy = False
        for name, slider in self.sliders.items():
            slider.observe(self._on_phi if name == "phi" else self._on_change, names="value")
        self.box = widgets.VBox([widgets.HBox([self.sliders["depth"], self.sliders["width"]]),
                                 widgets.HBox([self.sliders["resolution"], self.sliders["phi"]]),
                                 self.label, self.out])
        self._redraw()

    def values(self) -> tuple[float, float, float]:
        """The current (depth, width, resolution) multipliers."""
        return tuple(self.sliders[k].value for k in ("depth", "width", "resolution"))

    def figure(self) -> Figure:
        """The picture for the current slider values."""
        return scaling_figure(self.variant, *self.values())

    def _on_phi(self, change) -> None:
        self._busy = True  # set the three sliders, then redraw once
        try:
            for name, value in zip(("depth", "width", "resolution"), compound_multipliers(change["new"])):
                low, high = LIMITS[name]
                self.sliders[name].value = float(min(high, max(low, value)))
        finally:
            self._busy = False
        self._redraw()

    def _on_change(self, change) -> None:
        if not self._busy:
            self._redraw()

    def _redraw(self) -> None:
        from IPython.display import display

        d, w, r = self.values()
        self.label.value = f"FLOPs grow about as d * w^2 * r^2 = {d * w * w * r * r:.2f}"
        self.out.clear_output(wait=True)
        with self.out:
            display(self.figure())
