"""The answer key: one reference solution per exercise, what every check compares answers with.

One function per exercise, named like the exercise (`answers.conv2d` for `check.conv2d`),
with the signature the exercise asks the student to write; the declarations in
`labcode.checks.ch1`, `ch2` and `ch3` name them as their `reference`.
They are built from torch's own operations (`torch.nn.functional`, modules created on the
"meta" device for parameter counts), not from labcode's from-scratch code, so a check
never depends on the code it is teaching. The tests compare the counts and shapes here
with torchvision's models.

Sources: convolution arithmetic, Dumoulin & Visin (arXiv 1603.07285); AlexNet,
Krizhevsky et al. 2012 and torchvision's single-tower variant (arXiv 1404.5997);
squeeze-and-excitation, Hu et al. (arXiv 1709.01507); MBConv and compound scaling,
Tan & Le (arXiv 1905.11946, 2104.00298); the Vision Transformer, Dosovitskiy et al.
(arXiv 2010.11929).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

META = torch.device("meta")

# ---------------------------------------------------------------------------------------
# Chapter 1: convolution arithmetic, convolution, pooling, parameter counts


def padding_amount(mode: str, k: int) -> tuple[int, int]:
    """Pixels (before, after) that padding `mode` adds along an axis for a kernel of size k.

    'valid' adds none; 'same' adds k - 1 in total, the odd pixel after (as torch does);
    'full' adds k - 1 on each side.
    """
    if mode == "valid":
        return 0, 0
    if mode == "same":
        return (k - 1) // 2, k - 1 - (k - 1) // 2
    if mode == "full":
        return k - 1, k - 1
    raise ValueError(f"padding_amount: mode must be 'valid', 'same' or 'full', got {mode!r}")


def conv_output_size(n: int, k: int, stride: int = 1, padding: int | str = 0, dilation: int = 1) -> int:
    """floor((n + before + after - dilation*(k - 1) - 1) / stride) + 1."""
    span = dilation * (k - 1) + 1  # pixels one window covers
    if isinstance(padding, str):
        before, after = padding_amount(padding, span)
    else:
        before = after = padding
    return (n + before + after - span) // stride + 1


def _pad_pixels(padding: int | str, kh: int, kw: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom), the order F.pad wants."""
    if isinstance(padding, str):
        top, bottom = padding_amount(padding, kh)
        left, right = padding_amount(padding, kw)
        return left, right, top, bottom
    return padding, padding, padding, padding


def conv2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: int = 1, padding: int | str = 0) -> Tensor:
    """Cross-correlation of x (N, C, H, W) with w (O, C, kh, kw), plus bias b (O,)."""
    x = F.pad(x, _pad_pixels(padding, w.shape[2], w.shape[3]))
    return F.conv2d(x, w, b, stride=stride)  # (N, O, H', W')


conv2d_loop = conv2d


def max_pool2d(x: Tensor, kernel_size: int, stride: int | None = None) -> Tensor:
    """Largest value in each kernel_size x kernel_size window, windows `stride` apart (None: kernel_size)."""
    return F.max_pool2d(x, kernel_size, kernel_size if stride is None else stride)


def avg_pool2d(x: Tensor, kernel_size: int, stride: int | None = None) -> Tensor:
    """Mean of each kernel_size x kernel_size window, windows `stride` apart (None: kernel_size)."""
    return F.avg_pool2d(x, kernel_size, kernel_size if stride is None else stride)


def build_cnn(layers: Sequence[tuple], input_shape: tuple[int, int, int], device: Any = META) -> nn.Sequential:
    """The torch model a layer list describes (see `labcode.checks.cnn_param_count`).

    Built on the meta device by default: parameters with shapes but no memory, enough to count them.
    """
    features = input_shape[0]  # what the next layer receives: channels, or features after flatten
    shapes = layer_shapes(layers, input_shape)
    modules: list[nn.Module] = []
    for index, layer in enumerate(layers):
        kind = layer[0]
        if kind == "conv":
            _, out_channels, k, stride, padding = layer
            modules.append(nn.Conv2d(features, out_channels, k, stride, padding, device=device))
            features = out_channels
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(layer[1], layer[2]))
        elif kind == "flatten":
            modules.append(nn.Flatten())
            channels, height, width = shapes[index - 1] if index else input_shape
            features = channels * height * width
        elif kind == "linear":
            modules.append(nn.Linear(features, layer[1], device=device))
            features = layer[1]
        else:
            raise ValueError(f"build_cnn: unknown layer kind {kind!r}")
    return nn.Sequential(*modules)


def cnn_param_count(layers: Sequence[tuple], input_shape: tuple[int, int, int]) -> int:
    """Trainable parameters (weights and biases) of the CNN `layers` describes."""
    return sum(p.numel() for p in build_cnn(layers, input_shape).parameters())


# ---------------------------------------------------------------------------------------
# Chapter 2: AlexNet, grouped convolutions, top-k error, SE, MBConv, compound scaling

# torchvision's alexnet().features, one row per layer:
# ("conv", out_channels, kernel, stride, padding) | ("relu",) | ("maxpool", kernel, stride)
ALEXNET_FEATURES = [
    ("conv", 64, 11, 4, 2), ("relu",), ("maxpool", 3, 2),
    ("conv", 192, 5, 1, 2), ("relu",), ("maxpool", 3, 2),
    ("conv", 384, 3, 1, 1), ("relu",),
    ("conv", 256, 3, 1, 1), ("relu",),
    ("conv", 256, 3, 1, 1), ("relu",), ("maxpool", 3, 2),
]


def layer_shapes(rows: Sequence[tuple], input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """(C, H, W) after each row of a layer list (the rows of `build_cnn`), by convolution arithmetic."""
    channels, height, width = input_shape
    shapes = []
    for row in rows:
        if row[0] == "conv":
            _, channels, k, stride, padding = row
            height, width = (conv_output_size(n, k, stride, padding) for n in (height, width))
        elif row[0] == "maxpool":
            height, width = (conv_output_size(n, row[1], row[2]) for n in (height, width))
        shapes.append((channels, height, width))
    return shapes


def alexnet_output_shapes(input_size: int | tuple[int, int]) -> list[tuple[int, int, int]]:
    """(C, H, W) after each of the 13 layers of torchvision's AlexNet `features`, for a 3-channel input."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    return layer_shapes(ALEXNET_FEATURES, (3, height, width))


def grouped_conv_params(c_in: int, c_out: int, k: int, groups: int, bias: bool) -> int:
    """Parameters of nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias)."""
    conv = nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias, device=META)
    return sum(p.numel() for p in conv.parameters())


def topk_error(logits: Tensor, labels: Tensor, k: int) -> float:
    """Fraction (0 to 1) of rows of logits (N, classes) whose label is not among the k largest."""
    top = logits.topk(k, dim=1).indices  # (N, k)
    hit = (top == labels[:, None]).any(dim=1)  # (N,)
    return 1.0 - hit.double().mean().item()


def squeeze_excitation(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """EfficientNet's SE: mean over H, W -> linear w1 (Cr, C) -> SiLU -> linear w2 (C, Cr) -> sigmoid -> rescale x."""
    squeezed = x.mean(dim=(2, 3))  # (N, C)
    hidden = F.silu(F.linear(squeezed, w1, b1))  # (N, Cr)
    gate = torch.sigmoid(F.linear(hidden, w2, b2))  # (N, C)
    return x * gate[:, :, None, None]  # (N, C, H, W)


def _conv_bn(c_in: int, c_out: int, k: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, groups=groups, bias=False, device=META),
            nn.BatchNorm2d(c_out, device=META)]


def mbconv_params(c_in: int, c_out: int, expand: int, k: int, se_ratio: float) -> int:
    """Parameters of an MBConv block as torchvision builds it (BatchNorm after each conv).

    1x1 expansion to c_in*expand channels (skipped when expand == 1), depthwise kxk, SE with
    max(1, int(c_in * se_ratio)) squeeze channels (no SE when se_ratio == 0), 1x1 projection
    to c_out. Convolutions have no bias (BatchNorm follows); SE's two 1x1 convs have biases.
    """
    hidden = c_in * expand
    modules: list[nn.Module] = []
    if expand != 1:
        modules += _conv_bn(c_in, hidden, 1)
    modules += _conv_bn(hidden, hidden, k, groups=hidden)
    if se_ratio:
        squeeze = max(1, int(c_in * se_ratio))
        modules += [nn.Conv2d(hidden, squeeze, 1, device=META), nn.Conv2d(squeeze, hidden, 1, device=META)]
    modules += _conv_bn(hidden, c_out, 1)
    return sum(p.numel() for p in nn.ModuleList(modules).parameters())


def make_divisible(value: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor` (at least `divisor`), moved up a step if that loses over 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def compound_scaling(base_channels: int, base_layers: int, width_mult: float, depth_mult: float) -> tuple[int, int]:
    """(make_divisible(base_channels * width_mult, 8), ceil(base_layers * depth_mult))."""
    return make_divisible(base_channels * width_mult, 8), int(math.ceil(base_layers * depth_mult))


# ---------------------------------------------------------------------------------------
# Chapter 3: the Vision Transformer


def patchify(images: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, N, C*p*p): patches row by row, each flattened channel-major like a Conv2d weight."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, p, cols, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C*p*p)


def vit_sequence_length(image_size: int | tuple[int, int], patch_size: int) -> int:
    """Number of tokens the encoder sees: one per patch plus the class token."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return (height // patch_size) * (width // patch_size) + 1


def vit_param_count(config: dict) -> int:
    """Parameters of torchvision's VisionTransformer(**config) for 3-channel images.

    config keys: image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes.
    """
    D, M, p = config["hidden_dim"], config["mlp_dim"], config["patch_size"]
    tokens = vit_sequence_length(config["image_size"], p)
    patch_embedding = 3 * p * p * D + D
    class_and_positions = D + tokens * D
    attention = (3 * D * D + 3 * D) + (D * D + D)
    mlp = (D * M + M) + (M * D + D)
    block = 2 * D + attention + 2 * D + mlp  # two LayerNorms
    head = D * config["num_classes"] + config["num_classes"]
    return patch_embedding + class_and_positions + config["num_layers"] * block + 2 * D + head


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over the last two dimensions: (..., Nq, d), (..., Nk, d), (..., Nk, dv)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Nq, Nk)
    return scores.softmax(dim=-1) @ v  # (..., Nq, dv)


def split_heads(x: Tensor, h: int) -> Tensor:
    """(B, N, D) -> (B, h, N, D/h): head i gets features i*D/h to (i+1)*D/h."""
    B, N, D = x.shape
    return x.reshape(B, N, h, D // h).transpose(1, 2)  # (B, h, N, D/h)


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, N, d) -> (B, N, h*d), the inverse of split_heads."""
    B, h, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, h * d)  # (B, N, h*d)


def add_class_token_and_positions(tokens: Tensor, cls: Tensor, pos: Tensor) -> Tensor:
    """Prepend cls (1, 1, D) to every sequence of tokens (B, N, D), then add pos (1, N+1, D)."""
    B = tokens.shape[0]
    x = torch.cat([cls.expand(B, -1, -1), tokens], dim=1)  # (B, N+1, D)
    return x + pos


ENCODER_KEYS = (
    "ln_1.weight", "ln_1.bias",
    "self_attention.in_proj_weight", "self_attention.in_proj_bias",
    "self_attention.out_proj.weight", "self_attention.out_proj.bias",
    "ln_2.weight", "ln_2.bias",
    "mlp.0.weight", "mlp.0.bias", "mlp.3.weight", "mlp.3.bias",
)


def encoder_block(x: Tensor, params: dict[str, Tensor], num_heads: int) -> Tensor:
    """One pre-norm ViT encoder block; params are torchvision EncoderBlock state-dict entries."""
    D = x.shape[-1]
    y = F.layer_norm(x, (D,), params["ln_1.weight"], params["ln_1.bias"], eps=1e-6)
    qkv = F.linear(y, params["self_attention.in_proj_weight"], params["self_attention.in_proj_bias"])
    q, k, v = qkv.chunk(3, dim=-1)  # each (B, N, D)
    heads = scaled_dot_product_attention(split_heads(q, num_heads), split_heads(k, num_heads),
                                         split_heads(v, num_heads))  # (B, h, N, D/h)
    attended = F.linear(merge_heads(heads), params["self_attention.out_proj.weight"],
                        params["self_attention.out_proj.bias"])  # (B, N, D)
    x = x + attended
    y = F.layer_norm(x, (D,), params["ln_2.weight"], params["ln_2.bias"], eps=1e-6)
    y = F.gelu(F.linear(y, params["mlp.0.weight"], params["mlp.0.bias"]))  # (B, N, mlp_dim)
    return x + F.linear(y, params["mlp.3.weight"], params["mlp.3.bias"])  # (B, N, D)


# ---------------------------------------------------------------------------------------
# Exercises beyond "write a function": receptive field, pooling as a convolution, the input
# gradient, modules that load torchvision's weights, questions and experiments.
# Questions return their answer: one option ('C') or a set of them ({2, 5}).


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Side of the input window that one output unit of a chain of (kernel, stride) layers sees.

    r_l = r_(l-1) + (k_l - 1) * (product of the strides of the layers before l), r_0 = 1.
    """
    side, jump = 1, 1
    for k, s in layers:
        side += (k - 1) * jump
        jump *= s
    return side


def avg_pool_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weights (C, C, k, k) such that F.conv2d(x, w, stride=k) is k x k average pooling of x."""
    w = torch.zeros(channels, channels, kernel_size, kernel_size)
    each = torch.arange(channels)
    w[each, each] = 1.0 / (kernel_size * kernel_size)  # channel c reads only channel c
    return w


def conv_input_gradient(grad_out: Tensor, w: Tensor) -> Tensor:
    """dL/dx of y = conv2d(x, w) (stride 1, no padding), given dL/dy: a full convolution with the flipped kernel."""
    kh, kw = w.shape[-2:]
    padded = F.pad(grad_out, (kw - 1, kw - 1, kh - 1, kh - 1))  # 'full' padding
    return F.conv2d(padded, w.flip(2, 3).transpose(0, 1))  # (N, C, H, W)


def pooling_parameters() -> int:
    """Trainable parameters of a 2x2 max-pooling layer over 64 channels."""
    return 0


def larger_image_cost() -> str:
    """Conv layers, global average pooling and a linear classifier, fed 2x larger images: what grows?"""
    return "B"


def footprint_experiment() -> int:
    """Width of the gradient footprint of conv 3x3/1, conv 3x3/2, conv 5x5/1 (the experiment's setting)."""
    return receptive_field([(3, 1), (3, 2), (5, 1)])


def spot_errors_cnn() -> set[int]:
    """The wrong sentences of chapter 1's passage."""
    return {2, 4, 6}


def _conv_norm_act(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd k) + BatchNorm(eps=1e-3) [+ SiLU]: torchvision's Conv2dNormActivation."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out, eps=1e-3)]
    if act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class _Excite(nn.Module):
    """Squeeze-and-excitation with 1x1 convolutions named as torchvision names them (fc1, fc2)."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))  # (N, C, 1, 1)
        return x * gate


class MBConvBlock(nn.Module):
    """torchvision's MBConv: [1x1 expand] -> depthwise k x k -> SE -> 1x1 project, residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, expand: int, k: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = [_conv_norm_act(c_in, hidden, 1)] if expand != 1 else []
        layers += [_conv_norm_act(hidden, hidden, k, stride, groups=hidden),
                   _Excite(hidden, max(1, c_in // 4)),
                   _conv_norm_act(hidden, c_out, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class FusedMBConvBlock(nn.Module):
    """torchvision's FusedMBConv: k x k conv (expanding) -> [1x1 project], residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, expand: int, k: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            layers = [_conv_norm_act(c_in, hidden, k, stride), _conv_norm_act(hidden, c_out, 1, act=False)]
        else:
            layers = [_conv_norm_act(c_in, c_out, k, stride)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


mbconv_block = MBConvBlock
fused_mbconv_block = FusedMBConvBlock


def arithmetic_intensity(c_in: int, c_out: int, k: int, h: int, w: int, groups: int) -> float:
    """Multiply-adds per value read or written (input, weights, output) of a k x k conv, stride 1, 'same' padding."""
    macs = c_out * (c_in // groups) * k * k * h * w
    values = c_in * h * w + c_out * (c_in // groups) * k * k + c_out * h * w
    return macs / values


def progressive_image_sizes(epochs: int, stages: int, first: int, last: int) -> list[int]:
    """The training image side of each epoch: stage i of M (epoch e is in stage e*M // E) uses first + (last-first)*i/(M-1)."""
    sizes = []
    for epoch in range(epochs):
        stage = epoch * stages // epochs
        t = stage / (stages - 1) if stages > 1 else 1.0
        sizes.append(int(round(first + (last - first) * t)))
    return sizes


def alexnet_biggest_layer() -> str:
    """Which of AlexNet's layers holds the most parameters (options in the exercise)."""
    return "C"


def fused_mbconv_cost() -> str:
    """A Fused-MBConv's 3x3 conv against MBConv's expansion + depthwise pair: fewer, more or the same multiply-adds."""
    return "B"


def resolution_experiment() -> str:
    """What halving EfficientNetV2-S's input side does to its multiply-adds and parameters."""
    return "B"


def spot_errors_efficientnet() -> set[int]:
    """The wrong sentences of chapter 2's passage."""
    return {2, 3, 6}


class EncoderBlockModule(nn.Module):
    """A pre-norm ViT encoder block whose parameters carry torchvision's EncoderBlock names."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int):  # torchvision's order
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.Module()
        self.self_attention.in_proj_weight = nn.Parameter(torch.empty(3 * hidden_dim, hidden_dim))
        self.self_attention.in_proj_bias = nn.Parameter(torch.empty(3 * hidden_dim))
        self.self_attention.out_proj = nn.Linear(hidden_dim, hidden_dim)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden_dim, mlp_dim), nn.GELU(), nn.Identity(), nn.Linear(mlp_dim, hidden_dim))

    def forward(self, x: Tensor) -> Tensor:
        attn = self.self_attention
        qkv = F.linear(self.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (B, N, 3D)
        q, k, v = (split_heads(t, self.num_heads) for t in qkv.chunk(3, dim=-1))  # each (B, h, N, D/h)
        x = x + attn.out_proj(merge_heads(scaled_dot_product_attention(q, k, v)))  # (B, N, D)
        return x + self.mlp(self.ln_2(x))


encoder_block_module = EncoderBlockModule


def resize_position_embeddings(pos: Tensor, new_grid: int) -> Tensor:
    """(1, 1 + g*g, D) -> (1, 1 + G*G, D): the class token's row kept, the g x g grid resized bicubically to G x G."""
    cls, grid = pos[:, :1], pos[:, 1:]
    D, g = pos.shape[-1], math.isqrt(grid.shape[1])
    image = grid.reshape(1, g, g, D).permute(0, 3, 1, 2)  # (1, D, g, g)
    image = F.interpolate(image, size=(new_grid, new_grid), mode="bicubic", align_corners=True)  # (1, D, G, G)
    return torch.cat([cls, image.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, D)], dim=1)


def attention_cost_growth() -> float:
    """How many times more multiply-adds attention's two matrix products take when the image side doubles."""
    return 16.0


def size_dependent_parameters() -> str:
    """Which of a ViT's parameters depend on the image size."""
    return "B"


def patch_size_experiment() -> int:
    """Entries of one attention map of the ViT on 28x28 digits with 7x7 patches."""
    tokens = (28 // 7) ** 2 + 1
    return tokens * tokens


def spot_errors_vit() -> set[int]:
    """The wrong sentences of chapter 3's passage."""
    return {1, 4, 5}
