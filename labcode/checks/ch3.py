"""The exercises of chapter 3 (the Vision Transformer): patches, tokens, attention, heads, the encoder block.

One `declare(...)` per exercise of chapters/ch3_vit/exercises_solutions.ipynb; each
returns the check the notebook calls, `check.X(fn)`.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021 (arXiv 2010.11929);
attention from Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (arXiv 1706.03762).
The parameter names of `encoder_block` are the state-dict keys of torchvision's EncoderBlock,
so a student's block can run with real ViT weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from labcode.checks import answers
from labcode.checks.core import Case, Mistake, declare, seeded

# ---------------------------------------------------------------------------------------
# patchify


def _patchify_cases() -> list[Case]:
    gen, rng = seeded("patchify")
    configs = [(1, 1, 2, 2, 1), (1, 1, 4, 4, 2), (1, 2, 4, 4, 2), (2, 3, 4, 6, 2), (1, 3, 6, 3, 3)]
    while len(configs) < 50:
        p = rng.choice([1, 2, 3, 4])
        configs.append((rng.randint(1, 3), rng.choice([1, 2, 3]), p * rng.randint(1, 5), p * rng.randint(1, 5), p))
    configs = configs[:5] + sorted(configs[5:], key=lambda c: c[0] * c[1] * c[2] * c[3])
    return [Case((torch.randn(b, c, h, w, generator=gen), p)) for b, c, h, w, p in configs]


def _patchify_channels_last(images, p):
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, p, p, C)
    return x.reshape(B, -1, C * p * p)


def _patchify_column_major(images, p):
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 1, 3, 5)  # (B, cols, rows, C, p, p)
    return x.reshape(B, -1, C * p * p)


patchify = declare(
    "patchify",
    signature="patchify(images, p) -> (B, N, C*p*p)",
    doc="""Check fn(images (B, C, H, W), p) -> (B, N, C*p*p), N = (H/p)(W/p).

    Patches are taken row by row (left to right, top to bottom); each is flattened channel
    first, then row, then column, the order of a Conv2d weight (D, C, p, p) reshaped to
    (D, C*p*p). H and W are multiples of p.
    """,
    reference=answers.patchify,
    make_cases=_patchify_cases,
    forbidden=["labcode.layers.attention.patchify", "labcode.layers.patchify"],
    kind="tensor",
    mistakes=[
        Mistake(_patchify_channels_last, "inside a patch the order is channel first, then row, then column "
                "(C, p, p), as in a Conv2d weight; yours puts the channel last (p, p, C)"),
        Mistake(_patchify_column_major, "the patches go row by row (left to right, then down); yours go column by column"),
        Mistake(lambda images, p: images.reshape(images.shape[0], -1, images.shape[1] * p * p),
                "a plain reshape mixes pixels from different patches: reshape to (B, C, H/p, p, W/p, p), "
                "permute, then reshape"),
    ],
)


# ---------------------------------------------------------------------------------------
# vit_sequence_length


def _sequence_cases() -> list[Case]:
    _, rng = seeded("vit_sequence_length")
    configs: list = [(4, 2), (224, 16), (224, 32), (32, 4), ((8, 4), 2)]
    while len(configs) < 60:
        p = rng.choice([2, 4, 8, 14, 16, 32])
        size = p * rng.randint(1, 24) if rng.random() < 0.7 else (p * rng.randint(1, 24), p * rng.randint(1, 24))
        configs.append((size, p))
    return [Case(c) for c in configs]


def _hw(size):
    return (size, size) if isinstance(size, int) else size


vit_sequence_length = declare(
    "vit_sequence_length",
    signature="vit_sequence_length(image_size, patch_size) -> int",
    doc="""Check fn(image_size, patch_size) -> int, the tokens the encoder sees (patches plus the class token).

    image_size is an int (square) or (H, W), multiples of patch_size.
    """,
    reference=answers.vit_sequence_length,
    make_cases=_sequence_cases,
    kind="int",
    mistakes=[
        Mistake(lambda s, p: answers.vit_sequence_length(s, p) - 1, "add one token for the class token"),
        Mistake(lambda s, p: _hw(s)[0] // p + 1, "the patches form a grid: (H / p) * (W / p) of them, not H / p"),
        Mistake(lambda s, p: _hw(s)[0] * _hw(s)[1] // p + 1, "divide each side by the patch size: (H / p) * (W / p), not H * W / p"),
    ],
)


# ---------------------------------------------------------------------------------------
# vit_param_count


def _vit_config_cases() -> list[Case]:
    _, rng = seeded("vit_param_count")
    configs = [dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072, num_classes=1000),
               dict(image_size=32, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10)]
    while len(configs) < 40:
        heads = rng.choice([1, 2, 4, 8])
        hidden = heads * rng.choice([8, 16, 32, 64])
        p = rng.choice([2, 4, 8, 16])
        configs.append(dict(image_size=p * rng.randint(2, 14), patch_size=p, num_layers=rng.randint(1, 12),
                            num_heads=heads, hidden_dim=hidden, mlp_dim=hidden * rng.choice([2, 4]),
                            num_classes=rng.choice([10, 100, 1000])))
    return [Case((c,)) for c in configs[1:2] + configs[:1] + configs[2:]]


def _vit_without(config, *, positions=True, biases=True, norms=True, head=True):
    D, M, p = config["hidden_dim"], config["mlp_dim"], config["patch_size"]
    tokens = answers.vit_sequence_length(config["image_size"], p)
    total = 3 * p * p * D + (D if biases else 0)
    total += (D + tokens * D) if positions else 0
    block = 4 * D * D + M * D + D * M + ((4 * D + M + D) if biases else 0) + (4 * D if norms else 0)
    total += config["num_layers"] * block + (2 * D if norms else 0)
    if head:
        total += D * config["num_classes"] + (config["num_classes"] if biases else 0)
    return total


vit_param_count = declare(
    "vit_param_count",
    signature="vit_param_count(config) -> int",
    doc="""Check fn(config) -> int, the parameters of torchvision's VisionTransformer(**config) (3-channel images).

    config is a dict with image_size, patch_size, num_layers, num_heads, hidden_dim (D),
    mlp_dim and num_classes. Count the patch embedding (a Conv2d with bias), the class token,
    the position embeddings, every encoder block (LayerNorm, attention with q/k/v and output
    projections, LayerNorm, two-layer MLP, all with biases), the final LayerNorm and the head.
    """,
    reference=answers.vit_param_count,
    make_cases=_vit_config_cases,
    kind="int",
    mistakes=[
        Mistake(lambda c: _vit_without(c, positions=False),
                "the class token (D) and the position embeddings ((N + 1) * D) are learned parameters too"),
        Mistake(lambda c: _vit_without(c) - c["hidden_dim"],
                "D parameters are missing: the class token (a learned vector of D) or its position "
                "embedding (position 0, another D)"),
        Mistake(lambda c: _vit_without(c, biases=False),
                "the linear layers (patch embedding, q/k/v, output projection, MLP, head) all have biases"),
        Mistake(lambda c: _vit_without(c, norms=False),
                "each LayerNorm has 2 * D parameters: two per block and one after the last block"),
        Mistake(lambda c: _vit_without(c, head=False),
                "the classification head, a linear layer D -> num_classes, belongs to the count"),
    ],
)


# ---------------------------------------------------------------------------------------
# scaled_dot_product_attention


def _attention_cases() -> list[Case]:
    gen, rng = seeded("scaled_dot_product_attention")
    shapes = [((1, 1, 1), 1, 1), ((1, 2, 2), 2, 2), ((1, 3, 4), 5, 4), ((2, 4, 8), 4, 3)]
    while len(shapes) < 50:
        lead = (rng.randint(1, 3),) if rng.random() < 0.5 else (rng.randint(1, 3), rng.randint(1, 4))
        shapes.append(((*lead, rng.randint(1, 12), rng.choice([2, 4, 8, 16, 32])), rng.randint(1, 12), rng.choice([2, 4, 8, 16])))
    shapes = shapes[:4] + sorted(shapes[4:], key=lambda s: math.prod(s[0]) * s[1])
    cases = []
    for q_shape, nk, dv in shapes:
        *lead, nq, d = q_shape
        cases.append(Case((torch.randn(*lead, nq, d, generator=gen), torch.randn(*lead, nk, d, generator=gen),
                           torch.randn(*lead, nk, dv, generator=gen))))
    return cases


def _attention_scaled(scale):
    def attention(q, k, v):
        return (q @ k.transpose(-2, -1) * scale(q.shape[-1])).softmax(dim=-1) @ v
    return attention


scaled_dot_product_attention = declare(
    "scaled_dot_product_attention",
    signature="scaled_dot_product_attention(q, k, v) -> tensor",
    doc="""Check fn(q, k, v) -> softmax(q k^T / sqrt(d)) v.

    q is (..., Nq, d), k is (..., Nk, d), v is (..., Nk, dv), with one or two leading
    dimensions; the answer is (..., Nq, dv). Nq and Nk may differ.
    """,
    reference=answers.scaled_dot_product_attention,
    make_cases=_attention_cases,
    forbidden=["torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention",
               "torch.nn.functional.multi_head_attention_forward", "labcode.functional.scaled_dot_product_attention",
               "labcode.functional.attention.scaled_dot_product_attention",
               "labcode.functional.attention.scaled_dot_product_attention_unchecked"],
    kind="tensor",
    mistakes=[
        Mistake(_attention_scaled(lambda d: 1.0), "the scores need the 1 / sqrt(d) scale before the softmax"),
        Mistake(_attention_scaled(lambda d: 1.0 / d), "scale by 1 / sqrt(d), not 1 / d"),
        Mistake(_attention_scaled(lambda d: math.sqrt(d)), "divide the scores by sqrt(d); yours multiplies"),
        Mistake(lambda q, k, v: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-2) @ v,
                "the softmax runs over the keys (the last dimension), so each query's weights sum to 1"),
    ],
)


# ---------------------------------------------------------------------------------------
# split_heads and merge_heads


def _heads_cases(name: str, split: bool) -> list[Case]:
    gen, rng = seeded(name)
    configs = [(1, 1, 2, 1), (1, 2, 4, 2), (2, 3, 6, 3), (1, 4, 8, 2)]
    while len(configs) < 50:
        h = rng.choice([1, 2, 3, 4, 8])
        configs.append((rng.randint(1, 4), rng.randint(1, 16), h * rng.choice([1, 2, 4, 8]), h))
    configs = configs[:4] + sorted(configs[4:], key=lambda c: c[0] * c[1] * c[2])
    if split:
        return [Case((torch.randn(b, n, d, generator=gen), h)) for b, n, d, h in configs]
    return [Case((torch.randn(b, h, n, d // h, generator=gen),)) for b, n, d, h in configs]


split_heads = declare(
    "split_heads",
    signature="split_heads(x, h) -> (B, h, N, D/h)",
    doc="""Check fn(x (B, N, D), h) -> (B, h, N, D/h); head i holds features i*D/h to (i+1)*D/h of every token.""",
    reference=answers.split_heads,
    make_cases=lambda: _heads_cases("split_heads", True),
    kind="tensor",
    mistakes=[
        Mistake(lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),
                "reshaping straight to (B, h, N, D/h) mixes tokens: reshape to (B, N, h, D/h), then swap dims 1 and 2"),
        Mistake(lambda x, h: x.reshape(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),
                "head i takes the consecutive features i*D/h to (i+1)*D/h: reshape to (B, N, h, D/h), not (B, N, D/h, h)"),
    ],
)

merge_heads = declare(
    "merge_heads",
    signature="merge_heads(x) -> (B, N, h*d)",
    doc="""Check fn(x (B, h, N, d)) -> (B, N, h*d), the inverse of split_heads.""",
    reference=answers.merge_heads,
    make_cases=lambda: _heads_cases("merge_heads", False),
    kind="tensor",
    mistakes=[
        Mistake(lambda x: x.reshape(x.shape[0], x.shape[2], -1),
                "reshaping (B, h, N, d) straight to (B, N, h*d) mixes tokens: transpose(1, 2) first"),
        Mistake(lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
                "put the heads side by side, head 0's d features first: transpose to (B, N, h, d), not (B, N, d, h)"),
    ],
)


# ---------------------------------------------------------------------------------------
# add_class_token_and_positions


def _class_token_cases() -> list[Case]:
    gen, rng = seeded("add_class_token_and_positions")
    configs = [(1, 1, 2), (2, 3, 4), (3, 4, 8)]
    while len(configs) < 40:
        configs.append((rng.randint(1, 5), rng.randint(1, 20), rng.choice([2, 4, 8, 16, 32])))
    configs = configs[:3] + sorted(configs[3:], key=lambda c: c[0] * c[1] * c[2])
    return [Case((torch.randn(b, n, d, generator=gen), torch.randn(1, 1, d, generator=gen),
                  torch.randn(1, n + 1, d, generator=gen))) for b, n, d in configs]


add_class_token_and_positions = declare(
    "add_class_token_and_positions",
    signature="add_class_token_and_positions(tokens, cls, pos) -> (B, N+1, D)",
    doc="""Check fn(tokens (B, N, D), cls (1, 1, D), pos (1, N+1, D)) -> (B, N+1, D).

    Put the class token in front of every sequence in the batch, then add the position
    embeddings. tokens, cls and pos must not change.
    """,
    reference=answers.add_class_token_and_positions,
    make_cases=_class_token_cases,
    kind="tensor",
    mistakes=[
        Mistake(lambda t, c, p: torch.cat([t, c.expand(t.shape[0], -1, -1)], dim=1) + p,
                "the class token goes first, at position 0, not at the end"),
        Mistake(lambda t, c, p: torch.cat([c.expand(t.shape[0], -1, -1), t], dim=1),
                "add the position embeddings after prepending the class token"),
        Mistake(lambda t, c, p: torch.cat([c.expand(t.shape[0], -1, -1), t + p[:, 1:]], dim=1),
                "the class token gets a position embedding too: add pos (1, N+1, D) to the whole sequence"),
    ],
)


# ---------------------------------------------------------------------------------------
# encoder_block


def _encoder_cases() -> list[Case]:
    gen, rng = seeded("encoder_block")
    configs = [(1, 1, 4, 1, 8), (1, 3, 8, 2, 16), (2, 5, 8, 4, 32)]
    while len(configs) < 25:
        h = rng.choice([1, 2, 4])
        d = h * rng.choice([2, 4, 8])
        configs.append((rng.randint(1, 3), rng.randint(1, 12), d, h, d * rng.choice([2, 4])))
    configs = configs[:3] + sorted(configs[3:], key=lambda c: c[0] * c[1] * c[2] * c[4])
    cases = []
    for b, n, d, h, m in configs:
        params = {
            "ln_1.weight": 1 + 0.1 * torch.randn(d, generator=gen), "ln_1.bias": 0.1 * torch.randn(d, generator=gen),
            "self_attention.in_proj_weight": torch.randn(3 * d, d, generator=gen) / math.sqrt(d),
            "self_attention.in_proj_bias": 0.1 * torch.randn(3 * d, generator=gen),
            "self_attention.out_proj.weight": torch.randn(d, d, generator=gen) / math.sqrt(d),
            "self_attention.out_proj.bias": 0.1 * torch.randn(d, generator=gen),
            "ln_2.weight": 1 + 0.1 * torch.randn(d, generator=gen), "ln_2.bias": 0.1 * torch.randn(d, generator=gen),
            "mlp.0.weight": torch.randn(m, d, generator=gen) / math.sqrt(d), "mlp.0.bias": 0.1 * torch.randn(m, generator=gen),
            "mlp.3.weight": torch.randn(d, m, generator=gen) / math.sqrt(m), "mlp.3.bias": 0.1 * torch.randn(d, generator=gen),
        }
        cases.append(Case((torch.randn(b, n, d, generator=gen), params, h)))
    return cases


def _encoder_variant(*, post_norm=False, scale=True, act=F.gelu, residual=True):
    def block(x, params, num_heads):
        D = x.shape[-1]

        def norm(y, i):
            return F.layer_norm(y, (D,), params[f"ln_{i}.weight"], params[f"ln_{i}.bias"], eps=1e-6)

        def attention(y):
            q, k, v = F.linear(y, params["self_attention.in_proj_weight"], params["self_attention.in_proj_bias"]).chunk(3, dim=-1)
            q, k, v = (answers.split_heads(t, num_heads) for t in (q, k, v))
            scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
            out = answers.merge_heads(scores.softmax(dim=-1) @ v)
            return F.linear(out, params["self_attention.out_proj.weight"], params["self_attention.out_proj.bias"])

        def mlp(y):
            y = act(F.linear(y, params["mlp.0.weight"], params["mlp.0.bias"]))
            return F.linear(y, params["mlp.3.weight"], params["mlp.3.bias"])

        if post_norm:
            x = norm(x + attention(x), 1)
            return norm(x + mlp(x), 2)
        x = (x if residual else 0) + attention(norm(x, 1))
        return (x if residual else 0) + mlp(norm(x, 2))
    return block


encoder_block = declare(
    "encoder_block",
    signature="encoder_block(x, params, num_heads) -> tensor",
    doc="""Check fn(x (B, N, D), params, num_heads) -> (B, N, D), one pre-norm ViT encoder block.

    y = x + out_proj(attention(LN1(x))); out = y + MLP(LN2(y)), LayerNorm eps 1e-6,
    MLP = linear -> exact GELU -> linear. params holds torchvision EncoderBlock's state-dict
    entries: 'ln_1.weight', 'ln_1.bias', 'self_attention.in_proj_weight' (3D, D) (q, k, v
    stacked in that order), 'self_attention.in_proj_bias', 'self_attention.out_proj.weight',
    'self_attention.out_proj.bias', 'ln_2.weight', 'ln_2.bias', 'mlp.0.weight' (mlp_dim, D),
    'mlp.0.bias', 'mlp.3.weight' (D, mlp_dim), 'mlp.3.bias'. No dropout.
    """,
    reference=answers.encoder_block,
    make_cases=_encoder_cases,
    kind="tensor",
    time_limit=10.0,
    # The tanh approximation of GELU differs from the exact one by up to 7e-5 relative on
    # these cases: the default 1e-4 of float32 would let it pass. Float32 rounding stays near 1e-6.
    tolerance=1e-5,
    forbidden=["torch.nn.functional.multi_head_attention_forward", "torch._native_multi_head_attention",
               "torch._transformer_encoder_layer_fwd"],
    mistakes=[
        Mistake(_encoder_variant(post_norm=True), "ViT normalises before each sub-layer (pre-norm): x + attention(LN(x)), "
                "not LN(x + attention(x))"),
        Mistake(_encoder_variant(scale=False), "the attention scores need the 1 / sqrt(d) scale, d = D / num_heads"),
        Mistake(_encoder_variant(act=F.relu), "ViT's MLP uses GELU, not ReLU"),
        Mistake(_encoder_variant(act=lambda y: F.gelu(y, approximate="tanh")),
                "use the exact GELU (F.gelu's default), not the tanh approximation"),
        Mistake(_encoder_variant(residual=False), "each sub-layer's output is added to its input (the residual connection)"),
    ],
)


# ---------------------------------------------------------------------------------------
# encoder_block_module: the block as an nn.Module that loads torchvision's EncoderBlock weights


def _encoder_module_cases() -> list[Case]:
    from labcode.checks.ch2 import random_weights

    gen, rng = seeded("encoder_block_module")
    configs = [(1, 4, 8), (2, 8, 16), (2, 16, 64), (4, 32, 64), (8, 64, 128), (12, 96, 384)]
    cases = []
    for heads, dim, mlp in configs:
        x = torch.randn(2, rng.randint(1, 17), dim, generator=gen)
        cases.append(Case(((heads, dim, mlp), random_weights(answers.EncoderBlockModule, (heads, dim, mlp), gen), x)))
    return cases


def _module_variant(**changes):
    variant = _encoder_variant(**changes)

    class Variant(answers.EncoderBlockModule):
        def forward(self, x):
            return variant(x, dict(self.state_dict()), self.num_heads)
    return Variant


encoder_block_module = declare(
    "encoder_block_module",
    signature="encoder_block_module(num_heads, hidden_dim, mlp_dim) -> nn.Module class",
    doc="""Check fn(num_heads, hidden_dim, mlp_dim) -> nn.Module: fn is a class, a pre-norm ViT encoder block.

    Each case builds fn(*init_args), loads the weights of torchvision's EncoderBlock of the
    same size (random values) and compares its output in eval mode on x (B, N, hidden_dim).
    Parameters, named as torchvision names them: ln_1 and ln_2 (LayerNorm, eps 1e-6);
    self_attention.in_proj_weight (3D, D) and self_attention.in_proj_bias (3D,), q, k, v
    stacked in that order; self_attention.out_proj (Linear D -> D); mlp.0 (Linear D -> mlp_dim),
    exact GELU, mlp.3 (Linear mlp_dim -> D); no other parameters. forward(x):
    y = x + out_proj(attention(ln_1(x))); return y + mlp(ln_2(y)). torch's
    nn.MultiheadAttention's forward does not count: write the attention.
    """,
    reference=answers.encoder_block_module,
    make_cases=_encoder_module_cases,
    kind="module",
    time_limit=20.0,
    tolerance=1e-5,  # as encoder_block: the tanh GELU must fail
    forbidden=["torch.nn.MultiheadAttention.forward", "torch.nn.functional.multi_head_attention_forward",
               "torch._native_multi_head_attention", "torch._transformer_encoder_layer_fwd",
               "torchvision.models.vision_transformer.EncoderBlock.forward", "labcode.checks.answers.encoder_block"],
    mistakes=[
        Mistake(_module_variant(post_norm=True), "ViT normalises before each sub-layer (pre-norm): x + attention(ln_1(x)), "
                "not ln_1(x + attention(x))"),
        Mistake(_module_variant(scale=False), "the attention scores need the 1 / sqrt(d) scale, d = hidden_dim / num_heads"),
        Mistake(_module_variant(act=F.relu), "ViT's MLP uses GELU, not ReLU"),
        Mistake(_module_variant(act=lambda y: F.gelu(y, approximate="tanh")),
                "use the exact GELU (nn.GELU()'s default), not the tanh approximation"),
        Mistake(_module_variant(residual=False), "each sub-layer's output is added to its input (the residual connection)"),
    ],
)


# ---------------------------------------------------------------------------------------
# resize_position_embeddings


def _resize_cases() -> list[Case]:
    gen, rng = seeded("resize_position_embeddings")
    configs = [(1, 1, 1), (2, 1, 2), (2, 2, 4), (3, 4, 2), (4, 8, 6)]
    while len(configs) < 30:
        configs.append((rng.randint(1, 8), rng.choice([1, 2, 4, 8, 16]), rng.randint(1, 12)))
    configs = configs[:5] + sorted(configs[5:], key=lambda c: c[0] * c[1] * c[2])
    return [Case((torch.randn(1, 1 + g * g, d, generator=gen), new)) for g, d, new in configs]


def _resize_with(mode="bicubic", align_corners=True, transpose=False):
    def resize(pos, new_grid):
        cls, grid = pos[:, :1], pos[:, 1:]
        D, g = pos.shape[-1], math.isqrt(grid.shape[1])
        image = grid.reshape(1, g, g, D).permute(0, 3, 2, 1) if transpose else grid.reshape(1, g, g, D).permute(0, 3, 1, 2)
        image = F.interpolate(image, size=(new_grid, new_grid), mode=mode,
                              align_corners=align_corners if mode != "nearest" else None)
        return torch.cat([cls, image.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, D)], dim=1)
    return resize


resize_position_embeddings = declare(
    "resize_position_embeddings",
    signature="resize_position_embeddings(pos, new_grid) -> tensor",
    doc="""Check fn(pos (1, 1 + g*g, D), new_grid) -> (1, 1 + new_grid**2, D): position embeddings for another image size.

    Row 0 is the class token's embedding: keep it. Rows 1.. are a g x g grid in row-major
    order (row by row of patches): make it an image (1, D, g, g), resize it to
    (new_grid, new_grid) with F.interpolate(mode="bicubic", align_corners=True), as
    torchvision does, and flatten it back in row-major order after the class token's row.
    """,
    reference=answers.resize_position_embeddings,
    make_cases=_resize_cases,
    kind="tensor",
    forbidden=["torchvision.models.vision_transformer.interpolate_embeddings"],
    mistakes=[
        Mistake(_resize_with(transpose=True),
                "the tokens run row by row: reshape to (g, g, D) and move D first with permute(2, 0, 1), "
                "so rows stay rows (the grid came out transposed)"),
        Mistake(_resize_with(mode="bilinear"), "resize with mode='bicubic' (as torchvision), not bilinear"),
        Mistake(_resize_with(align_corners=False), "pass align_corners=True, as torchvision does"),
    ],
)


# ---------------------------------------------------------------------------------------
# Questions, an experiment and a passage with errors


def _one_case() -> list[Case]:
    return [Case(())]


attention_cost_growth = declare(
    "attention_cost_growth",
    signature="attention_cost_growth() -> float",
    doc="""Check fn() -> number: a ViT with a fixed patch size gets images of twice the side. By what factor
    do the multiply-adds of attention's two matrix products (q k^T and the weights times v) grow?
    Ignore the class token.""",
    reference=answers.attention_cost_growth,
    make_cases=_one_case,
    kind="number",
    explanation="""16. Twice the side gives 4x as many patches, N -> 4N. Each product compares every token
    with every token: N * N * d multiply-adds, so (4N)^2 / N^2 = 16. The projections and the MLP
    grow only 4x (linear in N): at high resolution attention dominates, which is why later models
    (Swin) restrict it to windows.""",
    mistakes=[
        Mistake(lambda: 4.0, "that is how the number of tokens grows; attention pairs every token with every token"),
        Mistake(lambda: 2.0, "count the patches first: twice the side, how many more patches?"),
        Mistake(lambda: 8.0, "N tokens give N * N scores: square the growth of N"),
    ],
)

size_dependent_parameters = declare(
    "size_dependent_parameters",
    signature="size_dependent_parameters() -> str",
    doc="""Check fn() -> str, one of 'A'-'D': which of a ViT's parameters change shape when it is built for
    larger images (same patch size)? A: the patch embedding's weights, B: the position
    embeddings, C: the attention projections, D: the MLP's weights.""",
    reference=answers.size_dependent_parameters,
    make_cases=_one_case,
    kind="choice",
    options=("A", "B", "C", "D"),
    explanation="""B. There is one position embedding per token, and the number of tokens grows with the
    image. Everything else acts on one patch or one token at a time, whatever their number. That
    is why a pretrained ViT runs at a new resolution once its position embeddings are resized
    (resize_position_embeddings).""",
    mistakes=[
        Mistake(lambda: "A", "the patch embedding maps one p x p patch to D numbers, whatever the number of patches"),
        Mistake(lambda: "C", "the q, k, v projections act on one token at a time: D -> 3D, whatever N is"),
        Mistake(lambda: "D", "the MLP acts on one token at a time: its weights do not see N"),
    ],
)

patch_size_experiment = declare(
    "patch_size_experiment",
    signature="patch_size_experiment() -> int",
    doc="""Check fn() -> int: the number of entries in one head's attention map of the ViT on 28x28 digits
    after your run with PATCH = 7 (the class token included).""",
    reference=answers.patch_size_experiment,
    make_cases=_one_case,
    kind="int",
    explanation="""289 = 17 * 17: 28 / 7 = 4 patches per side, 16 patches plus the class token. With 4x4
    patches the map had 50 * 50 = 2,500 entries: patches 1.75x wider made each attention map
    about 8.7x smaller, as attention's cost grows with the square of the number of tokens.""",
    mistakes=[
        Mistake(lambda: 2500, "that is the map for PATCH = 4; set PATCH = 7 and run the cell again"),
        Mistake(lambda: 256, "count the class token too: 16 patches + 1 = 17 tokens"),
        Mistake(lambda: 17, "one map holds a weight for every pair of tokens (query, key)"),
    ],
)

spot_errors_vit = declare(
    "spot_errors_vit",
    signature="spot_errors_vit() -> set of sentence numbers",
    doc="""Check fn() -> set of ints: the numbers (1-6) of the wrong sentences in the passage on the Vision Transformer.""",
    reference=answers.spot_errors_vit,
    make_cases=_one_case,
    kind="choice",
    options=(1, 2, 3, 4, 5, 6),
    explanation="""1, 4 and 5. (1) Self-attention relates tokens, one per patch (plus the class token), not
    pixels. (4) Its cost grows with the square of the number of tokens. (5) The ViT paper's
    '2-4x less compute' compares pre-training on JFT-300M with BiT ResNets at the same transfer
    accuracy; trained from scratch on small data, ViTs trail CNNs. Sentences 2, 3 and 6 are right.""",
    mistakes=[
        Mistake(lambda: {4, 5}, "read sentence 1 again: what does a ViT attend between, pixels or something else?"),
        Mistake(lambda: {1, 5}, "read sentence 4 again: every token is compared with every token"),
        Mistake(lambda: {1, 4}, "read sentence 5 again: what data and what comparison did the paper's claim rest on?"),
        Mistake(lambda: {1, 3, 4, 5}, "sentence 3 is right: the classifier reads the class token's final state"),
    ],
)
