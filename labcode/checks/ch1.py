"""The exercises of chapter 1 (convolutional networks): output sizes, padding, convolution, pooling, parameters.

One `declare(...)` per exercise of chapters/ch1_cnn/exercises_solutions.ipynb; each
returns the check the notebook calls, `check.X(fn)`. It compares the student's fn with
`labcode.checks.answers.X` on the declared cases, smallest first, and names the usual
mistake when the student's answer equals one of the wrong functions declared with it.

Convolution arithmetic follows Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning" (arXiv 1603.07285).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labcode.checks import answers
from labcode.checks.core import Case, Mistake, declare, seeded

PADDINGS = ("valid", "same", "full")


# ---------------------------------------------------------------------------------------
# conv_output_size


def _conv_output_size_cases() -> list[Case]:
    _, rng = seeded("conv_output_size")
    configs = set()
    for n, k, s, p in [(5, 3, 1, 0), (5, 3, 1, 1), (7, 3, 2, 1), (1, 1, 1, 0), (8, 2, 2, 0),
                       (5, 3, 1, "same"), (6, 4, 1, "same"), (5, 3, 1, "full"), (5, 3, 1, "valid"),
                       (7, 3, 2, "full"), (4, 4, 1, 0)]:
        configs.add((n, k, s, p, 1))
    while len(configs) < 200:
        n, k = rng.randint(1, 64), rng.randint(1, 11)
        stride = rng.choice([1, 1, 2, 2, 3, 4])
        padding = rng.choice([0, 0, 1, 2, 3, "valid", "same", "full"])
        dilation = 1 if rng.random() < 0.85 else rng.randint(2, 3)
        if padding == "same":
            stride = 1
        span = dilation * (k - 1) + 1
        extra = 2 * padding if isinstance(padding, int) else sum(answers.padding_amount(padding, span))
        if n + extra < span:
            continue
        configs.add((n, k, stride, padding, dilation))
    ordered = sorted(configs, key=lambda c: (c[4] > 1, c[0] + c[1], c[1], c[2], str(c[3])))
    return [Case((n, k, s, p), {"dilation": d} if d > 1 else {}) for n, k, s, p, d in ordered]


def _size_with(pads: dict, n: int, k: int, stride: int = 1, padding=0, dilation: int = 1) -> int:
    span = dilation * (k - 1) + 1
    if isinstance(padding, str):
        before, after = pads[padding](span)
    else:
        before = after = padding
    return (n + before + after - span) // stride + 1


def _rounded_up(n: int, k: int, stride: int = 1, padding=0, dilation: int = 1) -> int:
    span = dilation * (k - 1) + 1
    before, after = answers.padding_amount(padding, span) if isinstance(padding, str) else (padding, padding)
    return -(-(n + before + after - span) // stride) + 1


conv_output_size = declare(
    "conv_output_size",
    forbidden=["labcode.functional.conv_output_size", "labcode.functional.sizes.conv_output_size"],
    signature="conv_output_size(n, k, stride, padding, dilation=1) -> int",
    doc="""Check fn(n, k, stride, padding, dilation=1) -> int, the output size along one axis.

    padding is an int (pixels on each side) or 'valid', 'same' (stride 1 only) or 'full';
    dilation is passed as a keyword, only in the last cases.
    """,
    reference=answers.conv_output_size,
    make_cases=_conv_output_size_cases,
    kind="int",
    mistakes=[
        Mistake(_rounded_up,
                "the division by the stride must round down (//): a window that does not fit is dropped"),
        Mistake(lambda *a, **kw: answers.conv_output_size(*a, **kw) + 1,
                "one too many: floor((n + 2p - k) / s) + 1 already counts the first window once"),
        Mistake(lambda *a, **kw: answers.conv_output_size(*a, **kw) - 1,
                "one too few: did you forget the + 1 that counts the first window?"),
        Mistake(lambda n, k, stride=1, padding=0, dilation=1: _size_with(
            {"valid": lambda s: (0, 0), "same": lambda s: (s - 1, s - 1), "full": lambda s: (s - 1, s - 1)},
            n, k, stride, padding, dilation),
            "'same' pads k - 1 pixels in total, about (k - 1) / 2 on each side, not k - 1 on each side"),
        Mistake(lambda n, k, stride=1, padding=0, dilation=1: _size_with(
            {"valid": lambda s: (0, 0), "same": lambda s: ((s - 1) // 2, s - 1 - (s - 1) // 2),
             "full": lambda s: (s, s)}, n, k, stride, padding, dilation),
            "'full' pads k - 1 pixels on each side (the kernel must overlap at least one input pixel), not k"),
        Mistake(lambda n, k, stride=1, padding=0, dilation=1: answers.conv_output_size(n, k, 1, padding, dilation),
                "the stride is missing: divide the distance the window can travel by the stride"),
        Mistake(lambda n, k, stride=1, padding=0, dilation=1: answers.conv_output_size(n, k, stride, padding, 1),
                "dilation spreads the kernel: it covers dilation * (k - 1) + 1 pixels"),
    ],
)


# ---------------------------------------------------------------------------------------
# padding_amount


def _padding_amount_cases() -> list[Case]:
    return [Case((mode, k)) for k in range(1, 12) for mode in PADDINGS]


padding_amount = declare(
    "padding_amount",
    forbidden=["labcode.functional.padding_amount", "labcode.functional.sizes.padding_amount"],
    signature="padding_amount(mode, k) -> (before, after)",
    doc="""Check fn(mode, k) -> (before, after) for mode in 'valid', 'same', 'full' and k from 1 to 11.""",
    reference=answers.padding_amount,
    make_cases=_padding_amount_cases,
    kind="ints",
    mistakes=[
        Mistake(lambda mode, k: (k - 1, k - 1) if mode == "same" else answers.padding_amount(mode, k),
                "'same' adds k - 1 pixels in total, split between the two sides, not k - 1 on each side"),
        Mistake(lambda mode, k: (k // 2, (k - 1) // 2) if mode == "same" else answers.padding_amount(mode, k),
                "for an even k the odd pixel of 'same' padding goes after (at the end), as in torch"),
        Mistake(lambda mode, k: (k, k) if mode == "full" else answers.padding_amount(mode, k),
                "'full' adds k - 1 on each side: the kernel's last pixel just touches the first input pixel"),
    ],
)


# ---------------------------------------------------------------------------------------
# conv2d and conv2d_loop


def _conv2d_cases(name: str, count: int, max_size: int, max_channels: int) -> list[Case]:
    gen, rng = seeded(name)
    configs = [  # (N, C, H, W, O, kh, kw, stride, padding, bias)
        (1, 1, 3, 3, 1, 3, 3, 1, 0, False), (1, 1, 4, 4, 1, 2, 2, 1, 0, True),
        (1, 1, 5, 5, 1, 3, 3, 2, 1, True), (1, 2, 4, 6, 2, 3, 3, 1, "same", True),
        (2, 1, 5, 4, 1, 3, 3, 1, "full", False), (1, 1, 5, 5, 2, 3, 3, 1, "valid", True),
        (1, 3, 5, 7, 2, 1, 1, 1, 0, True), (2, 2, 6, 5, 3, 3, 2, 2, 0, True),
    ]
    while len(configs) < count:
        n, c, o = rng.randint(1, 3), rng.randint(1, max_channels), rng.randint(1, max_channels)
        h, w = rng.randint(1, max_size), rng.randint(1, max_size)
        padding = rng.choice([0, 0, 1, 2, "valid", "same", "full"])
        if isinstance(padding, str):
            kh = kw = rng.choice([1, 3, 5])
        else:
            kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        stride = 1 if padding == "same" else rng.choice([1, 1, 2, 3])
        pad = (kh - 1 if padding == "full" else 0) if isinstance(padding, str) else padding
        if h + 2 * pad < kh or w + 2 * pad < kw:
            continue
        configs.append((n, c, h, w, o, kh, kw, stride, padding, rng.random() < 0.7))
    configs = configs[:8] + sorted(configs[8:], key=lambda c: c[0] * c[1] * c[2] * c[3] * c[4] * c[5] * c[6])
    cases = []
    for n, c, h, w, o, kh, kw, stride, padding, bias in configs:
        x = torch.randn(n, c, h, w, generator=gen)
        weight = torch.randn(o, c, kh, kw, generator=gen)
        b = torch.randn(o, generator=gen) if bias else None
        cases.append(Case((x, weight, b, stride, padding)))
    return cases


def _flipped(x, w, b=None, stride=1, padding=0):
    return answers.conv2d(x, w.flip(-1, -2), b, stride, padding)


def _same_too_wide(x, w, b=None, stride=1, padding=0):
    if padding == "same":
        k = w.shape[-1]
        return F.conv2d(F.pad(x, (k - 1,) * 4), w, b, stride=stride)
    return answers.conv2d(x, w, b, stride, padding)


_CONV_MISTAKES = [
    Mistake(_flipped, "your output is a true convolution (kernel flipped); a CNN layer computes the "
            "cross-correlation: sum of x[i + a, j + b] * w[a, b], no flipping"),
    Mistake(lambda x, w, b=None, stride=1, padding=0: answers.conv2d(x, w, None, stride, padding),
            "the bias is missing: add b[o] to every position of output channel o"),
    Mistake(_same_too_wide, "'same' pads k - 1 pixels in total, (k - 1) / 2 on each side, not k - 1 on each side"),
    Mistake(lambda x, w, b=None, stride=1, padding=0: answers.conv2d(x, w, b, 1, padding),
            "the stride is ignored: move the window by `stride` pixels between outputs"),
    Mistake(lambda x, w, b=None, stride=1, padding=0: answers.conv2d(x, w, b, stride, 0 if isinstance(padding, int) else padding),
            "the int padding is ignored: pad `padding` zeros on every side first"),
    Mistake(lambda x, w, b=None, stride=1, padding=0: answers.conv2d(x, w.transpose(-1, -2), b, stride, padding)
            if w.shape[-1] == w.shape[-2] else None,
            "the kernel is transposed: w[o, c, a, b] multiplies x[n, c, i + a, j + b], rows first"),
]

_CONV_FORBIDDEN = ["torch.nn.functional.conv2d", "torch.conv2d", "torch.convolution", "torch._convolution",
                   "torch.nn.functional.unfold", "torch._C._nn.im2col", "torch.nn.functional.conv_transpose2d",
                   "labcode.functional.conv2d", "labcode.functional.conv2d_loop", "labcode.functional.conv.conv2d",
                   "labcode.functional.conv.conv2d_unchecked", "labcode.functional.conv.conv2d_loop"]

_CONV_DOC = """Check fn(x, w, b=None, stride=1, padding=0) -> tensor: a 2-D cross-correlation layer.

    x is (N, C, H, W), w is (O, C, kh, kw), b is (O,) or None, stride an int and padding
    an int (zeros on every side) or 'valid', 'same' (stride 1 only, odd kernels) or 'full'.
    The answer is (N, O, H', W') in x's dtype, on x's device. The check calls
    fn(x, w, b, stride, padding) with float32 tensors on the CPU, or on `device`.
    """

conv2d = declare(
    "conv2d",
    signature="conv2d(x, w, b=None, stride=1, padding=0) -> tensor",
    doc=_CONV_DOC,
    reference=answers.conv2d,
    make_cases=lambda: _conv2d_cases("conv2d", 80, 12, 4),
    forbidden=_CONV_FORBIDDEN,
    kind="tensor",
    time_limit=10.0,
    mistakes=_CONV_MISTAKES,
)

conv2d_loop = declare(
    "conv2d_loop",
    signature="conv2d_loop(x, w, b=None, stride=1, padding=0) -> tensor",
    doc=_CONV_DOC.replace("layer.", "layer, written with loops (small inputs, 30 s).", 1),
    reference=answers.conv2d_loop,
    make_cases=lambda: _conv2d_cases("conv2d_loop", 30, 7, 2),
    forbidden=_CONV_FORBIDDEN,
    kind="tensor",
    time_limit=30.0,
    mistakes=_CONV_MISTAKES,
)


# ---------------------------------------------------------------------------------------
# max_pool2d and avg_pool2d


def _pool_cases(name: str) -> list[Case]:
    gen, rng = seeded(name)
    configs = [(1, 1, 2, 2, 2, 2), (1, 1, 4, 4, 2, 2), (1, 1, 5, 5, 3, 2), (1, 2, 4, 6, 2, 1),
               (2, 1, 6, 5, 3, 3), (1, 1, 3, 3, 1, 1)]
    while len(configs) < 80:
        n, c = rng.randint(1, 3), rng.randint(1, 4)
        k = rng.randint(1, 4)
        stride = rng.choice([1, 2, 2, 3, k])
        h, w = rng.randint(k, 14), rng.randint(k, 14)
        configs.append((n, c, h, w, k, stride))
    configs = configs[:6] + sorted(configs[6:], key=lambda c: c[0] * c[1] * c[2] * c[3])
    # stride=None means "the kernel size", as in torch: some cases leave it out, one passes None.
    cases = [Case((torch.randn(n, c, h, w, generator=gen), k, s)) for n, c, h, w, k, s in configs]
    for n, c, h, w, k in [(1, 1, 4, 4, 2), (1, 2, 7, 5, 3)]:
        cases.insert(6, Case((torch.randn(n, c, h, w, generator=gen), k)))
    cases.insert(8, Case((torch.randn(1, 1, 6, 6, generator=gen), 2, None)))
    return cases


def _stride_none_is_one(pool):
    def wrong(x, k, s=None):
        return pool(x, k, 1 if s is None else s)
    return wrong


max_pool2d = declare(
    "max_pool2d",
    signature="max_pool2d(x, kernel_size, stride=None) -> tensor",
    doc="""Check fn(x, kernel_size, stride=None) -> tensor: max pooling of x (N, C, H, W), no padding, windows that do not fit dropped.

    stride None (or left out) means the kernel size, as in torch.
    """,
    reference=answers.max_pool2d,
    make_cases=lambda: _pool_cases("max_pool2d"),
    kind="tensor",
    forbidden=["torch.nn.functional.max_pool2d", "torch.max_pool2d", "torch.nn.functional.max_pool2d_with_indices",
               "torch._C._nn.max_pool2d_with_indices", "torch.nn.functional.adaptive_max_pool2d",
               "labcode.functional.max_pool2d", "labcode.functional.pool.max_pool2d",
               "labcode.functional.pool.max_pool2d_unchecked"],
    mistakes=[
        Mistake(_stride_none_is_one(answers.max_pool2d),
                "stride=None means stride = kernel_size (windows side by side), not 1"),
        Mistake(lambda x, k, s=None: answers.max_pool2d(x, k, 1),
                "the windows moved by 1 pixel: step by `stride` between windows"),
        Mistake(lambda x, k, s=None: answers.max_pool2d(x, k, k),
                "the windows moved by kernel_size: use the `stride` argument"),
        Mistake(lambda x, k, s=None: answers.avg_pool2d(x, k, s), "that is the mean of each window; max pooling keeps the largest value"),
        Mistake(lambda x, k, s=None: answers.max_pool2d(x.abs(), k, s), "take the largest value, not the largest magnitude (no abs)"),
    ],
)

avg_pool2d = declare(
    "avg_pool2d",
    signature="avg_pool2d(x, kernel_size, stride=None) -> tensor",
    doc="""Check fn(x, kernel_size, stride=None) -> tensor: average pooling of x (N, C, H, W), no padding.

    stride None (or left out) means the kernel size, as in torch.
    """,
    reference=answers.avg_pool2d,
    make_cases=lambda: _pool_cases("avg_pool2d"),
    kind="tensor",
    forbidden=["torch.nn.functional.avg_pool2d", "torch._C._nn.avg_pool2d", "torch.nn.functional.adaptive_avg_pool2d",
               "torch._C._nn.adaptive_avg_pool2d", "labcode.functional.avg_pool2d", "labcode.functional.pool.avg_pool2d",
               "labcode.functional.pool.avg_pool2d_unchecked"],
    mistakes=[
        Mistake(_stride_none_is_one(answers.avg_pool2d),
                "stride=None means stride = kernel_size (windows side by side), not 1"),
        Mistake(lambda x, k, s=None: answers.avg_pool2d(x, k, 1),
                "the windows moved by 1 pixel: step by `stride` between windows"),
        Mistake(lambda x, k, s=None: answers.avg_pool2d(x, k, k),
                "the windows moved by kernel_size: use the `stride` argument"),
        Mistake(lambda x, k, s=None: answers.avg_pool2d(x, k, s) * k,
                "divide by the number of pixels in the window, kernel_size * kernel_size, not kernel_size"),
        Mistake(lambda x, k, s=None: answers.avg_pool2d(x, k, s) * k * k, "that is the window's sum; divide by kernel_size * kernel_size"),
        Mistake(lambda x, k, s=None: answers.max_pool2d(x, k, s), "that is max pooling; average pooling takes each window's mean"),
    ],
)


# ---------------------------------------------------------------------------------------
# cnn_param_count


def _cnn_cases() -> list[Case]:
    _, rng = seeded("cnn_param_count")
    cases = [
        Case(([("conv", 4, 3, 1, 1), ("relu",), ("flatten",), ("linear", 10)], (1, 8, 8))),
        Case(([("conv", 8, 5, 1, 0), ("relu",), ("maxpool", 2, 2), ("flatten",), ("linear", 10)], (3, 12, 12))),
    ]
    while len(cases) < 40:
        channels, start = rng.choice([1, 3]), rng.randint(8, 32)
        size = start
        layers: list[tuple] = []
        for _ in range(rng.randint(1, 3)):
            k = rng.choice([1, 3, 5])
            stride, padding = rng.choice([1, 1, 2]), rng.choice([0, k // 2])
            if (size + 2 * padding - k) // stride + 1 < 2:
                break
            size = (size + 2 * padding - k) // stride + 1
            layers += [("conv", rng.choice([4, 8, 16, 32]), k, stride, padding), ("relu",)]
            if size >= 4 and rng.random() < 0.5:
                layers.append(("maxpool", 2, 2))
                size = (size - 2) // 2 + 1
        if not layers:
            continue
        layers.append(("flatten",))
        for _ in range(rng.randint(1, 2)):
            layers.append(("linear", rng.choice([10, 32, 64])))
        cases.append(Case((layers, (channels, start, start))))
    return cases


def _params_no_bias(layers, input_shape):
    model = answers.build_cnn(layers, input_shape)
    return sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))


def _params_unshrunk(layers, input_shape):
    channels, height, width = input_shape
    total, c = 0, channels
    for layer in layers:
        if layer[0] == "conv":
            total += c * layer[2] * layer[2] * layer[1] + layer[1]
            c = layer[1]
        elif layer[0] == "flatten":
            c = c * height * width
        elif layer[0] == "linear":
            total += c * layer[1] + layer[1]
            c = layer[1]
    return total


def _params_no_in_channels(layers, input_shape):
    model = answers.build_cnn(layers, input_shape)
    return sum(p.numel() // (p.shape[1] if p.dim() == 4 else 1) for p in model.parameters())


cnn_param_count = declare(
    "cnn_param_count",
    signature="cnn_param_count(layers, input_shape) -> int",
    doc="""Check fn(layers, input_shape) -> int, the trainable parameters of a described CNN.

    input_shape is (C, H, W); layers is a list of tuples, in order:
        ("conv", out_channels, kernel_size, stride, padding)   square kernel, with bias
        ("relu",)
        ("maxpool", kernel_size, stride)
        ("flatten",)
        ("linear", out_features)                               with bias
    The answer is sum(p.numel() for p in model.parameters()) of the torch model built
    from those rows (see labcode.checks.answers.build_cnn).
    """,
    reference=answers.cnn_param_count,
    make_cases=_cnn_cases,
    kind="int",
    mistakes=[
        Mistake(_params_no_bias, "the biases are missing: every conv and linear layer adds one per output channel or feature"),
        Mistake(_params_unshrunk, "the first linear layer sees the flattened output of the last conv/pool, "
                "C * H' * W' with the shrunken H', W', not the input's H and W"),
        Mistake(_params_no_in_channels, "a conv kernel spans every input channel: weights = out_channels * in_channels * k * k"),
    ],
)


# ---------------------------------------------------------------------------------------
# receptive_field


def _receptive_field_cases() -> list[Case]:
    _, rng = seeded("receptive_field")
    chains = [[(1, 1)], [(3, 1)], [(3, 1), (3, 1)], [(3, 2), (3, 1)], [(3, 1), (2, 2), (3, 1)],
              [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1)]]
    while len(chains) < 80:
        chains.append([(rng.choice([1, 2, 3, 5, 7]), rng.choice([1, 1, 2, 3])) for _ in range(rng.randint(1, 8))])
    chains = chains[:6] + sorted(chains[6:], key=len)
    return [Case((chain,)) for chain in chains]


def _rf_with(step):
    def rf(layers):
        side, jump = 1, 1
        for k, s in layers:
            side, jump = step(side, jump, k, s)
        return side
    return rf


receptive_field = declare(
    "receptive_field",
    signature="receptive_field(layers) -> int",
    doc="""Check fn(layers) -> int: the receptive field (in input pixels, along one axis) of one output unit.

    layers is a list of (kernel_size, stride) pairs, applied in order (convolutions and
    pools alike; padding does not change the size). r_0 = 1 and
    r_l = r_(l-1) + (k_l - 1) * (product of the strides of the layers before l).
    """,
    reference=answers.receptive_field,
    make_cases=_receptive_field_cases,
    kind="int",
    forbidden=["labcode.receptive_field.receptive_field", "labcode.receptive_field.receptive_field_table"],
    mistakes=[
        Mistake(_rf_with(lambda r, j, k, s: (r + k - 1, j)),
                "a layer after a stride-s layer steps s input pixels per unit: multiply (k - 1) by the product of the earlier strides"),
        Mistake(_rf_with(lambda r, j, k, s: (r + (k - 1) * j * s, j * s)),
                "the product runs over the strides of the layers *before* l, not including layer l's own stride"),
        Mistake(lambda layers: sum(k for k, _ in layers),
                "kernel sizes do not simply add: two stacked 3x3 layers see 5 pixels, not 6; start from 1 and add k - 1"),
    ],
)


# ---------------------------------------------------------------------------------------
# avg_pool_kernel


def _avg_kernel_cases() -> list[Case]:
    _, rng = seeded("avg_pool_kernel")
    configs = [(1, 1), (1, 2), (2, 2), (3, 3), (2, 4)]
    while len(configs) < 30:
        configs.append((rng.randint(1, 16), rng.randint(1, 5)))
    return [Case(c) for c in configs[:5] + sorted(configs[5:])]


avg_pool_kernel = declare(
    "avg_pool_kernel",
    signature="avg_pool_kernel(channels, kernel_size) -> tensor",
    doc="""Check fn(channels, kernel_size) -> tensor w of shape (C, C, k, k), float32.

    F.conv2d(x, w, stride=kernel_size) must equal F.avg_pool2d(x, kernel_size) for any x
    with C channels: output channel c averages the k x k window of input channel c only.
    """,
    reference=answers.avg_pool_kernel,
    make_cases=_avg_kernel_cases,
    kind="tensor",
    forbidden=["torch.nn.functional.avg_pool2d"],
    mistakes=[
        Mistake(lambda c, k: torch.full((c, c, k, k), 1.0 / (k * k)),
                "a dense kernel mixes channels: output channel c must read input channel c only (zeros elsewhere)"),
        Mistake(lambda c, k: answers.avg_pool_kernel(c, k) * k,
                "a k x k window holds k * k values: divide by k * k, not by k"),
        Mistake(lambda c, k: answers.avg_pool_kernel(c, k) * (k * k),
                "ones add up the window; the mean divides by k * k"),
    ],
)


# ---------------------------------------------------------------------------------------
# conv_input_gradient


def _input_gradient_cases() -> list[Case]:
    gen, rng = seeded("conv_input_gradient")
    configs = [(1, 1, 1, 1, 1, 1), (1, 1, 1, 2, 2, 2), (1, 1, 1, 3, 3, 3), (1, 2, 2, 3, 3, 3), (2, 3, 2, 4, 5, 2)]
    while len(configs) < 40:
        k = rng.choice([1, 2, 3, 5])
        configs.append((rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 6), k))
    configs = configs[:5] + sorted(configs[5:], key=lambda c: c[0] * c[1] * c[2] * c[3] * c[4])
    cases = []
    for n, c, o, ho, wo, k in configs:
        cases.append(Case((torch.randn(n, o, ho, wo, generator=gen), torch.randn(o, c, k, k, generator=gen))))
    return cases


conv_input_gradient = declare(
    "conv_input_gradient",
    signature="conv_input_gradient(grad_out, w) -> tensor",
    doc="""Check fn(grad_out, w) -> tensor: dL/dx for y = F.conv2d(x, w) (stride 1, no padding), given dL/dy.

    grad_out (N, O, Ho, Wo), w (O, C, k, k); the answer is (N, C, Ho + k - 1, Wo + k - 1):
    a 'full' convolution (k - 1 zeros on each side) of grad_out with w flipped in both
    spatial axes and its two channel axes swapped. No autograd, no conv_transpose2d.
    """,
    reference=answers.conv_input_gradient,
    make_cases=_input_gradient_cases,
    kind="tensor",
    forbidden=["torch.nn.grad.conv2d_input", "torch.nn.functional.conv_transpose2d", "torch.autograd.grad",
               "torch.autograd.backward"],
    mistakes=[
        Mistake(lambda g, w: F.conv2d(F.pad(g, [w.shape[-1] - 1] * 4), w.transpose(0, 1)),
                "flip the kernel (w.flip(2, 3)): the gradient is a true convolution, the forward pass a cross-correlation"),
        Mistake(lambda g, w: F.conv2d(F.pad(g, [(w.shape[-1] - 1) // 2] * 4), w.flip(2, 3).transpose(0, 1)),
                "pad grad_out with k - 1 zeros on each side ('full'), so every input pixel gets a value"),
    ],
)


# ---------------------------------------------------------------------------------------
# Questions and an experiment: the student's function takes no input and returns the answer.


def _one_case() -> list[Case]:
    return [Case(())]


pooling_parameters = declare(
    "pooling_parameters",
    signature="pooling_parameters() -> int",
    doc="""Check fn() -> int: how many trainable parameters a 2x2 max-pooling layer over 64 channels has.""",
    reference=answers.pooling_parameters,
    make_cases=_one_case,
    kind="int",
    explanation="""None at all: max pooling takes the largest value of each window by a fixed rule,
    with nothing to learn. It changes the shape (halves H and W here), not the parameter count.""",
    mistakes=[
        Mistake(lambda: 2 * 2 * 64, "a pooling window is not a kernel with weights: what would a max learn?"),
        Mistake(lambda: 2 * 2 * 64 + 64, "pooling has no weights and no bias"),
        Mistake(lambda: 4, "pooling has no weights, neither per channel nor shared"),
    ],
)

larger_image_cost = declare(
    "larger_image_cost",
    signature="larger_image_cost() -> str",
    doc="""Check fn() -> str, one of 'A'-'D': a CNN of convolutions, global average pooling and one linear layer
    gets images of twice the side. A: its parameters grow, B: its multiply-adds grow (about 4x),
    its parameters do not, C: both grow about 4x, D: neither changes.""",
    reference=answers.larger_image_cost,
    make_cases=_one_case,
    kind="choice",
    options=("A", "B", "C", "D"),
    explanation="""B. A convolution's weights are shared by every position, so they do not depend on the
    image size; the work does: each of 4x as many output positions costs the same multiply-adds.
    Global average pooling hands the linear layer C numbers whatever H and W are.""",
    mistakes=[
        Mistake(lambda: "A", "a kernel is the same at every position: does a bigger image need more kernels?"),
        Mistake(lambda: "C", "the weights are shared across positions; global pooling keeps the linear layer's input at C numbers"),
        Mistake(lambda: "D", "the same kernel is applied at 4x as many positions: what happens to the work?"),
    ],
)

footprint_experiment = declare(
    "footprint_experiment",
    signature="footprint_experiment() -> int",
    doc="""Check fn() -> int: the width, in pixels, of the gradient footprint your run drew for
    conv 3x3 stride 1, conv 3x3 stride 2, conv 5x5 stride 1 (the experiment's setting).""",
    reference=answers.footprint_experiment,
    make_cases=_one_case,
    kind="int",
    explanation="""13 = 1 + (3-1)*1 + (3-1)*1 + (5-1)*2: the third layer sits after a stride-2 layer, so
    each step of its kernel moves 2 input pixels. With tanh between the layers every path carries
    gradient, so the footprint fills the whole receptive field, whatever the random weights.""",
    mistakes=[
        Mistake(lambda: 9, "9 is the width with a 3x3 last layer (did you set KERNEL = 5 and run the cell?), and "
                "also what you get counting the 5x5 layer's (5 - 1) once: it comes after a stride-2 layer, so it counts twice"),
        Mistake(lambda: 11, "kernel sizes do not add up (3 + 3 + 5): start from 1 and add (k - 1) times the earlier strides"),
        Mistake(lambda: 15, "multiply by the strides *before* the layer, not by the layer's own"),
    ],
)

spot_errors_cnn = declare(
    "spot_errors_cnn",
    signature="spot_errors_cnn() -> set of sentence numbers",
    doc="""Check fn() -> set of ints: the numbers (1-6) of the wrong sentences in the passage on convolutions.""",
    reference=answers.spot_errors_cnn,
    make_cases=_one_case,
    kind="choice",
    options=(1, 2, 3, 4, 5, 6),
    explanation="""2, 4 and 6. (2) 'Same' padding for a 5x5 kernel adds 4 zeros in total, 2 on each side.
    (4) Stride 1 is common, but AlexNet's first layer uses 4, EfficientNetV2 halves the size with
    stride 2 at each stage's start, and the ViT's patch embedding strides by the patch size.
    (6) 'Full' padding adds k - 1 zeros on each side, not more than k. Sentences 1, 3 and 5 are right.""",
    mistakes=[
        Mistake(lambda: {4, 6}, "read sentence 2 again: is 4 the padding on each side, or in total?"),
        Mistake(lambda: {2, 6}, "read sentence 4 again: what are AlexNet's first stride and the ViT's patch stride?"),
        Mistake(lambda: {2, 4}, "read sentence 6 again: how many zeros does 'full' padding add on each side?"),
        Mistake(lambda: {2, 3, 4, 6}, "sentence 3 is right: libraries compute cross-correlation and call it convolution"),
    ],
)
