"""EfficientNetV2's building blocks: MBConv, Fused-MBConv, squeeze-and-excitation, stochastic depth.

MBConv is the inverted residual block of MobileNetV2 (Sandler et al., CVPR 2018, arXiv
1801.04381) with squeeze-and-excitation (Hu et al., CVPR 2018, arXiv 1709.01507), as used
by EfficientNet (Tan & Le, ICML 2019, arXiv 1905.11946). Fused-MBConv is EfficientNetV2's
variant (Tan & Le, ICML 2021, arXiv 2104.00298, fig. 2): one regular kxk convolution
replaces the 1x1 expansion + depthwise kxk pair, which runs faster on accelerators in the
early, high-resolution stages. Stochastic depth: Huang et al., ECCV 2016 (arXiv 1603.09382).

Each block's parts are named by their role in the paper's figure 2: MBConv has `expand`
(1x1), `depthwise` (kxk), `se` and `project` (1x1); Fused-MBConv has `fused` (the kxk conv
that replaces expand + depthwise), `se` and `project`. torchvision keeps the same parts in a
Sequential (`block.0`, `block.1`, ...); the blocks accept those keys when loading, so
`model.load_state_dict(torchvision_model.state_dict(), strict=True)` works, and
`torchvision_state_dict` gives our weights back under torchvision's keys. That mapping is
`_ShortcutBlock.torchvision_names`, used both ways.
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


def _squeeze_excitation(channels: int, in_channels: int, se_ratio: float) -> nn.Module:
    # EfficientNet squeezes to a fraction of the block's *input* width, not the expanded one
    if se_ratio > 0:
        return SqueezeExcitation(channels, max(1, int(in_channels * se_ratio)))
    return nn.Identity()


class _ShortcutBlock(nn.Module):
    """What MBConv and Fused-MBConv share: the identity shortcut with stochastic depth, and
    torchvision's state-dict keys.

    A subclass lists its parts in `PARTS`, in the order of the forward pass; a part that a
    block does not have is an `nn.Identity` (no parameters, no state-dict entries).
    """

    PARTS: tuple[str, ...] = ()

    def __init__(self, in_channels: int, out_channels: int, stride: int, stochastic_depth_prob: float) -> None:
        super().__init__()
        # the shortcut adds the input to the output, so both must have the same shape
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def parts(self) -> dict[str, nn.Module]:
        """The parts this block has, by name, in the order of the forward pass."""
        present = {name: getattr(self, name) for name in self.PARTS}
        return {name: m for name, m in present.items() if not isinstance(m, nn.Identity)}

    def shortcut(self, x: Tensor, branch: Tensor) -> Tensor:
        """x + branch when the shapes allow (the branch dropped at random in training), else branch."""
        if not self.use_residual:
            return branch
        return x + self.stochastic_depth(branch)

    def torchvision_names(self) -> dict[str, str]:
        """Our part names -> torchvision's: the parts present, numbered in order (`block.0`, ...)."""
        return {name: f"block.{i}" for i, name in enumerate(self.parts())}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # torch's hook for renamed keys (BatchNorm uses it too): torchvision's `block.i.*`
        # become our `<part>.*`, in place, before this block and its parts read the dict.
        for ours, theirs in self.torchvision_names().items():
            old = f"{prefix}{theirs}."
            for key in [k for k in state_dict if k.startswith(old)]:
                state_dict[f"{prefix}{ours}.{key[len(old):]}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def torchvision_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """`model.state_dict()` under torchvision's keys, e.g. for torchvision's EfficientNetV2.

    Every MBConv / FusedMBConv inside `model` has its parts renamed back to `block.0`,
    `block.1`, ...; all other keys are unchanged.

    Args:
        model: any module; an EfficientNetV2, a stage, or one block.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"torchvision_state_dict: expected a torch.nn.Module, got {type(model).__name__}")
    renames: dict[str, str] = {}
    for path, module in model.named_modules():
        if isinstance(module, _ShortcutBlock):
            base = f"{path}." if path else ""
            for ours, theirs in module.torchvision_names().items():
                renames[f"{base}{ours}."] = f"{base}{theirs}."
    out = {}
    for key, value in model.state_dict().items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        out[key if prefix is None else renames[prefix] + key[len(prefix):]] = value
    return out


class MBConv(_ShortcutBlock):
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

    PARTS = ("expand", "depthwise", "se", "project")

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
        super().__init__(in_channels, out_channels, stride, stochastic_depth_prob)
        if stride not in (1, 2):
            raise ValueError(f"MBConv: stride must be 1 or 2, got {stride}")
        hidden = round_to_multiple(in_channels * expand_ratio, 8)  # C_in * e, a multiple of 8
        # expand 1x1: C_in -> C_in * e, the "inverted" part of the bottleneck (none when e = 1)
        self.expand = ConvNormAct(in_channels, hidden, 1) if hidden != in_channels else nn.Identity()
        # depthwise kxk: one filter per channel (groups == channels); it carries the stride
        self.depthwise = ConvNormAct(hidden, hidden, kernel_size, stride, groups=hidden)
        self.se = _squeeze_excitation(hidden, in_channels, se_ratio)
        # project 1x1: C_in * e -> C_out, linear (no activation): a ReLU/SiLU on a narrow
        # layer would destroy information (MobileNetV2's linear bottleneck)
        self.project = ConvNormAct(hidden, out_channels, 1, activation=False, role="linear")

    def forward(self, x: Tensor) -> Tensor:
        out = self.expand(x)  # (B, C_in * e, H, W)
        out = self.depthwise(out)  # (B, C_in * e, H / s, W / s)
        out = self.se(out)  # (B, C_in * e, H / s, W / s), each channel rescaled
        out = self.project(out)  # (B, C_out, H / s, W / s)
        return self.shortcut(x, out)  # x + out when the shapes match


class FusedMBConv(_ShortcutBlock):
    """Fused-MBConv: one regular kxk conv replaces expand 1x1 + depthwise kxk, then project 1x1.

    With expand_ratio 1 there is nothing to project back: the block is kxk conv + BN + SiLU,
    and there is no expanded layer for squeeze-and-excitation to rescale (asking for it
    raises a ValueError rather than leaving it out silently).

    Args:
        in_channels: channels entering the block.
        out_channels: channels leaving it.
        expand_ratio: width of the fused conv's output as a multiple of in_channels.
        kernel_size: the fused conv's kernel (3 in EfficientNetV2).
        stride: stride of the fused conv (1 or 2).
        se_ratio: squeeze width as a fraction of in_channels (0: no SE, as in EfficientNetV2);
            must be 0 when the block does not expand.
        stochastic_depth_prob: drop probability of the residual branch.
    """

    PARTS = ("fused", "se", "project")

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
        super().__init__(in_channels, out_channels, stride, stochastic_depth_prob)
        if stride not in (1, 2):
            raise ValueError(f"FusedMBConv: stride must be 1 or 2, got {stride}")
        hidden = round_to_multiple(in_channels * expand_ratio, 8)  # C_in * e, a multiple of 8
        expands = hidden != in_channels
        if se_ratio > 0 and not expands:
            raise ValueError(
                f"FusedMBConv: se_ratio must be 0 when the block does not expand (expand_ratio="
                f"{expand_ratio} keeps {in_channels} channels: one kxk conv, no expanded layer to "
                f"rescale), got se_ratio={se_ratio}"
            )
        # fused kxk: C_in -> C_in * e in one dense conv, expansion and spatial mixing at once;
        # straight to C_out when the block does not expand (nothing to project back)
        self.fused = ConvNormAct(in_channels, hidden if expands else out_channels, kernel_size, stride)
        self.se = _squeeze_excitation(hidden, in_channels, se_ratio)
        # project 1x1: C_in * e -> C_out, linear
        self.project = ConvNormAct(hidden, out_channels, 1, activation=False, role="linear") if expands else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.fused(x)  # (B, C_in * e, H / s, W / s); (B, C_out, H / s, W / s) when e = 1
        out = self.se(out)  # same shape, each channel rescaled
        out = self.project(out)  # (B, C_out, H / s, W / s)
        return self.shortcut(x, out)  # x + out when the shapes match


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
