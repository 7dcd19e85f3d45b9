"""The Vision Transformer against torchvision's: weights, outputs, attention maps."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from labcode.layers.backend import set_backend
from labcode.models.vit import TABLE_1, ViTConfig, VisionTransformer, vit_b_16, vit_b_32, vit_l_16, vit_config, vit_small
from paper_tables import VIT_PARAMS, VIT_TABLE_1  # tests/paper_tables.py

BUILDERS = {"vit_b_16": vit_b_16, "vit_b_32": vit_b_32, "vit_l_16": vit_l_16}
PARAMS_1000 = VIT_PARAMS  # with 1000 classes, measured with torchvision 0.29.1


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_zero_inits(model: torch.nn.Module) -> None:
    # torchvision starts the head and the class token at zero: every output would be 0.
    with torch.no_grad():
        model.heads.head.weight.normal_(std=0.05)
        model.heads.head.bias.normal_()
        model.class_token.normal_()


def _random_torchvision(name: str, **kwargs) -> torch.nn.Module:
    """torchvision's model filled with random numbers, quicker than its own initialisation."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(**kwargs)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(("ln_1.weight", "ln_2.weight", "ln.weight")):
                p.normal_(1.0, 0.1)
            else:
                p.normal_(std=0.02)
    _randomise_zero_inits(model)
    return model.eval()


def _ours_sharing_weights(name: str, ref: torch.nn.Module, **kwargs) -> VisionTransformer:
    """Our model built without memory, then holding torchvision's very tensors (strict load)."""
    with torch.device("meta"):
        ours = BUILDERS[name](**kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    return ours.eval()


# Full-size models are compared at 64x64 pixels (16 patches for /16, 4 for /32): the same
# code as at 224, a fraction of the time. Loading at 224 is checked by the meta-device test.
SMALL_IMAGE = 64


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def full_size_pair(request):
    name = request.param
    torch.manual_seed(0)
    ref = _random_torchvision(name, image_size=SMALL_IMAGE)
    ours = _ours_sharing_weights(name, ref, image_size=SMALL_IMAGE)
    yield name, ref, ours


def test_builder_gives_torchvision_outputs_with_1000_and_10_classes(full_size_pair):
    name, ref, ours = full_size_pair
    x = torch.randn(2, 3, SMALL_IMAGE, SMALL_IMAGE)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert got.shape == (2, 1000)
    assert expected.abs().max() > 1e-2  # a real comparison, not zeros against zeros
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    # 10 classes: same body, a new 10-way head on both sides.
    with torch.device("meta"):
        ref10 = getattr(torchvision.models, name)(num_classes=10, image_size=SMALL_IMAGE)
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("heads.")}
    state["heads.head.weight"] = torch.randn(10, ref.hidden_dim) * 0.05
    state["heads.head.bias"] = torch.randn(10)
    ref10.load_state_dict(state, strict=True, assign=True)
    ours10 = _ours_sharing_weights(name, ref10.eval(), num_classes=10, image_size=SMALL_IMAGE)
    with torch.no_grad():
        expected, got = ref10(x), ours10(x)
    assert got.shape == (2, 10)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("num_classes", [1000, 10])
def test_state_dict_keys_shapes_and_counts_equal_torchvision_at_224(name, num_classes):
    with torch.device("meta"):  # no memory, no initialisation
        ref = getattr(torchvision.models, name)(num_classes=num_classes)
        ours = BUILDERS[name](num_classes=num_classes)
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, v.shape) for k, v in ref.state_dict().items()]
    assert _count(ours) == _count(ref)
    if num_classes == 1000:
        assert _count(ours) == PARAMS_1000[name]
    # Heads and LayerNorm eps do not show in shapes.
    assert ours.encoder.layers[0].self_attention.num_heads == ref.encoder.layers[0].self_attention.num_heads
    assert ours.encoder.ln.eps == ref.encoder.ln.eps == 1e-6


def test_vit_b_32_at_224_equals_torchvision_on_both_backends():
    torch.manual_seed(0)
    ref = _random_torchvision("vit_b_32")
    ours = _ours_sharing_weights("vit_b_32", ref)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)
        got_torch = ours(x)
        got_scratch = set_backend(ours, "scratch")(x)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(got_torch, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_scratch, expected, rtol=1e-4, atol=1e-4)


def _tiny_pair(seed: int = 0):
    """torchvision's VisionTransformer and ours in the same small 32x32x3 shape."""
    torch.manual_seed(seed)
    ref = TorchvisionViT(image_size=32, patch_size=4, num_layers=2, num_heads=4,
                         hidden_dim=32, mlp_dim=64, num_classes=10).double().eval()
    _randomise_zero_inits(ref)
    ours = vit_small(image_size=32, in_channels=3, patch_size=4, num_layers=2, num_heads=4,
                     hidden_dim=32, mlp_dim=64, num_classes=10).double().eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _torchvision_attention(ref, x):
    """Per-head attention weights of each torchvision block, layer by layer."""
    tokens = ref._process_input(x)
    tokens = torch.cat([ref.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)
    tokens = tokens + ref.encoder.pos_embedding
    maps = []
    for block in ref.encoder.layers:
        y = block.ln_1(tokens)
        _, weights = block.self_attention(y, y, y, need_weights=True, average_attn_weights=False)
        maps.append(weights)
        tokens = block(tokens)
    return maps


@pytest.mark.parametrize("backend", ["torch", "scratch"])
def test_small_model_matches_torchvision_outputs_gradients_and_attention(backend):
    ref, ours = _tiny_pair()
    set_backend(ours, backend)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)

    ref(x).square().sum().backward()
    ours(x).square().sum().backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, rtol=1e-9, atol=1e-10, msg=name)

    with torch.no_grad():
        expected = _torchvision_attention(ref, x)
    maps = ours.attention_maps(x)
    assert len(maps) == 2
    for got, want in zip(maps, expected):
        assert got.shape == (3, 4, 65, 65)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got.sum(-1), torch.ones(3, 4, 65, dtype=torch.float64))


def test_encoder_returns_its_attention_maps_from_its_own_pass():
    torch.manual_seed(0)
    model = vit_small(num_layers=3).eval()
    tokens = model.tokens(torch.randn(2, 1, 28, 28))  # (2, 17, 64)
    with torch.no_grad():
        out, maps = model.encoder(tokens, need_weights=True)
        torch.testing.assert_close(out, model.encoder(tokens))  # same tokens with or without weights
    assert len(maps) == 3 and all(m.shape == (2, 4, 17, 17) for m in maps)
    # each block's map is what that block's attention computes on its own input
    with torch.no_grad():
        x = tokens + model.encoder.pos_embedding
        for block, got in zip(model.encoder.layers, maps):
            _, expected = block.self_attention(block.ln_1(x), need_weights=True)
            torch.testing.assert_close(got, expected)
            x = block(x)
    # attention_maps asks the encoder (hooks on it fire) instead of repeating its forward pass
    calls = []
    model.encoder.register_forward_hook(lambda module, args, kwargs, output: calls.append(kwargs), with_kwargs=True)
    model.attention_maps(torch.randn(2, 1, 28, 28))
    assert calls == [{"need_weights": True}]


def test_vit_small_scratch_equals_torch_in_output_and_gradient():
    torch.manual_seed(0)
    model = vit_small().double()
    with torch.no_grad():
        model.heads.head.weight.normal_()
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    results = []
    for backend in ["torch", "scratch"]:
        model.zero_grad()
        out = set_backend(model, backend)(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_t, grads_t), (out_s, grads_s) = results
    torch.testing.assert_close(out_s, out_t, rtol=1e-10, atol=1e-10)
    for g_s, g_t in zip(grads_s, grads_t):
        torch.testing.assert_close(g_s, g_t, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("image_size,in_channels,patches", [(28, 1, 16), (32, 3, 64)])
def test_vit_small_shapes_and_finite(image_size, in_channels, patches):
    torch.manual_seed(0)
    model = vit_small(image_size=image_size, in_channels=in_channels)
    x = torch.randn(5, in_channels, image_size, image_size)
    out = model(x)
    assert out.shape == (5, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    maps = model.eval().attention_maps(x)
    assert len(maps) == model.config.num_layers
    assert all(m.shape == (5, model.config.num_heads, patches + 1, patches + 1) for m in maps)
    g = int(patches ** 0.5)
    similarity = model.position_similarity()
    assert similarity.shape == (g, g, g, g)
    torch.testing.assert_close(similarity[torch.arange(g)[:, None], torch.arange(g), torch.arange(g)[:, None],
                                          torch.arange(g)], torch.ones(g, g))


def test_vit_small_learns():
    torch.manual_seed(0)
    model = vit_small()
    x = torch.randn(10, 1, 28, 28)
    y = torch.arange(10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


def test_dropout_active_only_in_training():
    torch.manual_seed(0)
    model = vit_small(dropout=0.5, attention_dropout=0.5)
    with torch.no_grad():
        model.heads.head.weight.normal_()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(model.train()(x), model(x))
        torch.testing.assert_close(model.eval()(x), model(x))


def test_table_1_rows_and_configs():
    assert [(r.model, r.num_layers, r.hidden_dim, r.mlp_dim, r.num_heads) for r in TABLE_1] == VIT_TABLE_1
    config = vit_config("ViT-Large", 16, num_classes=10)
    _, layers, hidden, _, _ = VIT_TABLE_1[1]  # ViT-Large
    assert (config.num_layers, config.hidden_dim, config.num_classes, config.seq_length) == (layers, hidden, 10, 197)
    with pytest.raises(ValueError, match=r"ViT-Base.*'ViT-Giant'"):
        vit_config("ViT-Giant", 14)


def test_input_errors_name_expected_and_actual():
    model = vit_small()
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(2, 3, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(1, 28, 28\)"):
        model(torch.randn(1, 28, 28))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match=r"image_size=30.*patch_size=16"):
        VisionTransformer(ViTConfig(image_size=30))
    with pytest.raises(ValueError, match=r"embed_dim=64.*num_heads=5"):
        vit_small(num_heads=5)
    with pytest.raises(TypeError, match="ViTConfig"):
        VisionTransformer({"image_size": 224})


@pytest.mark.parametrize("backend", ["torch", "scratch"])
def test_backend_switch_reaches_every_layer(backend, monkeypatch):
    import labcode.functional as LF

    calls = {"conv2d": 0, "linear": 0, "scaled_dot_product_attention": 0}
    for fn in calls:
        original = getattr(LF, fn)

        def counted(*args, _fn=fn, _original=original, **kwargs):
            calls[_fn] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(LF, fn, counted)
    model = set_backend(vit_small(num_layers=3), backend)
    model(torch.randn(2, 1, 28, 28))
    if backend == "torch":
        assert calls == {"conv2d": 0, "linear": 0, "scaled_dot_product_attention": 0}
    else:
        # patches once; per block in_proj, out_proj and two MLP layers; the head.
        assert calls == {"conv2d": 1, "linear": 3 * 4 + 1, "scaled_dot_product_attention": 3}


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "scratch"])
def test_vit_small_on_cuda_matches_cpu(backend):
    torch.manual_seed(0)
    model = set_backend(vit_small(image_size=32, in_channels=3), backend).eval()
    with torch.no_grad():
        model.heads.head.weight.normal_()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        cuda_model = model.to("cuda")
        got = cuda_model(x.to("cuda"))
        maps = cuda_model.attention_maps(x.to("cuda"))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            mixed = cuda_model(x.to("cuda"))
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-3)
    assert maps[0].device.type == "cuda"
    assert torch.isfinite(mixed).all()
    loss = cuda_model.train()(x.to("cuda")).square().mean()
    loss.backward()
    assert all(p.grad.device.type == "cuda" and torch.isfinite(p.grad).all() for p in cuda_model.parameters())
