"""EfficientNetV2's building blocks: MBConv, Fused-MBConv, squeeze-and-excitation, stochastic depth.

MBConv is the inverted residual block of MobileNetV2 (Sandler et al., CVPR 2018, arXiv
1801.04381) with squeeze-and-excitation (Hu et al., CVPR 2018, arXiv 1709.01507), as used
by EfficientNet (Tan & Le, ICML 2019, arXiv 1905.11946). Fused-MBConv is EfficientNetV2's
variant (Tan & Le, ICML 2021, arXiv 2104.00298, fig. 2): one regular kxk convolution
replaces the 1x1 expansion + depthwise kxk pair, which runs faster on accelerators in the
early, high-resolution stages. Stochastic depth: Huang et al., ECCV 2016 (arXiv 1603.09382).

The submodule layout (`block.0`, `block.1`, ..., `stochastic_depth`, SE's `fc1`/`fc2`)
is torchvision's, so ImageNet weights load with strict=True; the comments and the
`role` shown by `print(model)` name each part's job in the paper.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from labcode.layers.conv import Conv2d

BN_EPS = 1e-3  # EfficientNetV2's batch-norm epsilon (torchvision and the official code)


class ConvNormAct(nn.Sequential):
    """Convolution -> BatchNorm -> optional SiLU, 'same' padding for odd kernels.

    A plain chain, so a Sequential: its children are `0` (conv), `1` (norm), `2` (SiLU),
    the keys torchvision's Conv2dNormActivation uses.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
        role: str = "",
    ) -> None:
        padding = (kernel_size - 1) // 2  # keeps H, W at stride 1 for odd k
        layers: list[nn.Module] = [
            Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
        ]
        if activation:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)
        self.role = role

    def extra_repr(self) -> str:
        return self.role


class SqueezeExcitation(nn.Module):
    """Channel attention: pool each channel to one number, then rescale channels by a gate in (0, 1).

    Args:
        channels: channels of the feature map it rescales (the expanded width in MBConv).
        squeeze_channels: width of the bottleneck (EfficientNet: max(1, block input // 4)).
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.fc1 = Conv2d(channels, squeeze_channels, 1)  # squeeze: C -> C_sq
        self.fc2 = Conv2d(squeeze_channels, channels, 1)  # excite: C_sq -> C
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): global average pool
        s = self.fc1(s)  # (B, C_sq, 1, 1)
        s = self.activation(s)
        s = self.fc2(s)  # (B, C, 1, 1)
        s = self.scale_activation(s)  # gates in (0, 1)
        return x * s  # (B, C, H, W), each channel rescaled


class StochasticDepth(nn.Module):
    """Drop a residual branch at random during training (Huang et al. 2016).

    mode "row": each sample in the batch is dropped independently; "batch": the whole
    batch at once. Kept samples are scaled by 1 / (1 - p) so the expected output is
    unchanged; in eval mode (or with p = 0) it is the identity.

    Args:
        p: probability of dropping the branch, in [0, 1].
        mode: "row" or "batch".
    """

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"StochasticDepth: p must be in [0, 1], got {p}")
        if mode not in ("row", "batch"):
            raise ValueError(f"StochasticDepth: mode must be 'row' or 'batch', got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        if self.mode == "row":
            shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, 1, 1): one coin per sample
        else:
            shape = (1,) * x.ndim  # one coin for the batch
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        if keep > 0.0:
            mask = mask / keep
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand 1x1 -> depthwise kxk -> SE -> project 1x1 (+ residual).

    Args:
        in_channels: channels entering the block.
        out_channels: channels leaving it.
        expand_ratio: width of the inner layers as a multiple of in_channels.
        kernel_size: the depthwise kernel (3 in EfficientNetV2).
        stride: stride of the depthwise conv (1 or 2).
        se_ratio: squeeze width as a fraction of in_channels (0 disables SE).
        stochastic_depth_prob: drop probability of the residual branch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: float,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.25,
        stochastic_depth_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv: stride must be 1 or 2, got {stride}")
        hidden = round_to_multiple(in_channels * expand_ratio, 8)
        self.use_residual = stride == 1 and in_channels == out_channels
        parts: dict[str, nn.Module] = {}
        if hidden != in_channels:
            # expand 1x1: C_in -> C_in * e, the "inverted" part of the bottleneck
            parts["expand"] = ConvNormAct(in_channels, hidden, 1, role="expand 1x1")
        # depthwise kxk: one filter per channel (groups == channels); it carries the stride
        parts["depthwise"] = ConvNormAct(
            hidden, hidden, kernel_size, stride, groups=hidden, role=f"depthwise {kernel_size}x{kernel_size}"
        )
        if se_ratio > 0:
            parts["se"] = SqueezeExcitation(hidden, max(1, int(in_channels * se_ratio)))
        # project 1x1: C_in * e -> C_out, linear (no activation): a ReLU/SiLU on a narrow
        # layer would destroy information (MobileNetV2's linear bottleneck)
        parts["project"] = ConvNormAct(hidden, out_channels, 1, activation=False, role="project 1x1, linear")
        # torchvision's layout: the parts live in `block` as block.0, block.1, ...
        self.block = nn.Sequential(*parts.values())
        self._index = {role: i for i, role in enumerate(parts)}
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def part(self, role: str) -> nn.Module | None:
        """The submodule playing `role` ("expand", "depthwise", "se", "project"), or None."""
        i = self._index.get(role)
        return None if i is None else self.block[i]

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if "expand" in self._index:
            out = self.block[self._index["expand"]](out)  # (B, C_in * e, H, W)
        out = self.block[self._index["depthwise"]](out)  # (B, C_in * e, H / s, W / s)
        if "se" in self._index:
            out = self.block[self._index["se"]](out)  # same shape, channels reweighted
        out = self.block[self._index["project"]](out)  # (B, C_out, H / s, W / s)
        if self.use_residual:
            out = self.stochastic_depth(out)
            out = out + x  # identity shortcut
        return out


class FusedMBConv(nn.Module):
    """Fused-MBConv: one regular kxk conv replaces expand 1x1 + depthwise kxk, then project 1x1.

    With expand_ratio 1 there is nothing to project back: the block is kxk conv + BN + SiLU.

    Args:
        in_channels: channels entering the block.
        out_channels: channels leaving it.
        expand_ratio: width of the fused conv's output as a multiple of in_channels.
        kernel_size: the fused conv's kernel (3 in EfficientNetV2).
        stride: stride of the fused conv (1 or 2).
        se_ratio: squeeze width as a fraction of in_channels (0: no SE, as in EfficientNetV2).
        stochastic_depth_prob: drop probability of the residual branch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: float,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        stochastic_depth_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FusedMBConv: stride must be 1 or 2, got {stride}")
        hidden = round_to_multiple(in_channels * expand_ratio, 8)
        self.use_residual = stride == 1 and in_channels == out_channels
        parts: dict[str, nn.Module] = {}
        if hidden != in_channels:
            # fused kxk: C_in -> C_in * e in one dense conv, expansion and spatial mixing at once
            parts["fused"] = ConvNormAct(
                in_channels, hidden, kernel_size, stride, role=f"fused expand {kernel_size}x{kernel_size}"
            )
            if se_ratio > 0:
                parts["se"] = SqueezeExcitation(hidden, max(1, int(in_channels * se_ratio)))
            # project 1x1: C_in * e -> C_out, linear
            parts["project"] = ConvNormAct(hidden, out_channels, 1, activation=False, role="project 1x1, linear")
        else:
            # expand ratio 1: nothing to project back, the block is one kxk conv + BN + SiLU
            parts["fused"] = ConvNormAct(
                in_channels, out_channels, kernel_size, stride, role=f"fused {kernel_size}x{kernel_size}"
            )
        self.block = nn.Sequential(*parts.values())  # torchvision's layout: block.0, block.1, ...
        self._index = {role: i for i, role in enumerate(parts)}
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def part(self, role: str) -> nn.Module | None:
        """The submodule playing `role` ("fused", "se", "project"), or None."""
        i = self._index.get(role)
        return None if i is None else self.block[i]

    def forward(self, x: Tensor) -> Tensor:
        out = self.block[self._index["fused"]](x)  # (B, C_in * e or C_out, H / s, W / s)
        if "se" in self._index:
            out = self.block[self._index["se"]](out)  # same shape, channels reweighted
        if "project" in self._index:
            out = self.block[self._index["project"]](out)  # (B, C_out, H / s, W / s)
        if self.use_residual:
            out = self.stochastic_depth(out)
            out = out + x  # identity shortcut
        return out


def round_to_multiple(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never more than 10% down.

    Hardware runs channel counts that are multiples of 8 fastest; EfficientNet's width
    scaling rounds this way.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down by more than 10% loses too much width
        rounded += divisor
    return rounded
