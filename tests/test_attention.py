"""Multi-head self-attention and patch embedding against torch's own modules."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from labcode.layers.attention import MultiHeadSelfAttention, PatchEmbedding, patchify
from labcode.layers.backend import set_backend

BACKENDS = ["torch", "scratch"]
TOL = dict(rtol=1e-9, atol=1e-10)  # float64 throughout


def _pair(embed_dim: int, num_heads: int, bias: bool = True, seed: int = 0):
    """torch's MultiheadAttention with random weights, and ours loaded from it."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True).double()
    if bias:  # torch initialises the biases to zero; make them count
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    ours = MultiHeadSelfAttention(embed_dim, num_heads, bias=bias).double()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _outputs_and_grads(module, x, g, call):
    x = x.clone().requires_grad_(True)
    out = call(module, x)
    (out * g).sum().backward()
    grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    return out.detach(), x.grad, grads


def _torch_call(ref, x):
    return ref(x, x, x, need_weights=False)[0]


def _our_call(ours, x):
    return ours(x)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(
    num_heads=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    seq_len=st.integers(1, 9),
    batch=st.integers(1, 3),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_mhsa_matches_torch_output_and_gradient(backend, num_heads, head_dim, seq_len, batch, bias, seed):
    embed_dim = num_heads * head_dim
    ref, ours = _pair(embed_dim, num_heads, bias, seed)
    set_backend(ours, backend)
    x = torch.randn(batch, seq_len, embed_dim, dtype=torch.float64)
    g = torch.randn(batch, seq_len, embed_dim, dtype=torch.float64)

    out_ref, dx_ref, grads_ref = _outputs_and_grads(ref, x, g, _torch_call)
    out, dx, grads = _outputs_and_grads(ours, x, g, _our_call)

    torch.testing.assert_close(out, out_ref, **TOL)
    torch.testing.assert_close(dx, dx_ref, **TOL)
    assert grads.keys() == grads_ref.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], **TOL, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20, deadline=None)
@given(num_heads=st.integers(1, 4), head_dim=st.integers(1, 6), seq_len=st.integers(1, 8),
       batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_mhsa_weights_match_torch_per_head(backend, num_heads, head_dim, seq_len, batch, seed):
    ref, ours = _pair(num_heads * head_dim, num_heads, seed=seed)
    set_backend(ours, backend)
    x = torch.randn(batch, seq_len, num_heads * head_dim, dtype=torch.float64)
    with torch.no_grad():
        out_ref, w_ref = ref(x, x, x, need_weights=True, average_attn_weights=False)
        out, w = ours(x, need_weights=True)
    assert w.shape == (batch, num_heads, seq_len, seq_len)
    torch.testing.assert_close(w, w_ref, **TOL)
    torch.testing.assert_close(out, out_ref, **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(batch, num_heads, seq_len, dtype=torch.float64), **TOL)


@pytest.mark.parametrize("bias", [True, False])
def test_mhsa_state_dict_keys_and_shapes_equal_torch(bias):
    ref = nn.MultiheadAttention(12, 3, bias=bias, batch_first=True)
    ours = MultiHeadSelfAttention(12, 3, bias=bias)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_comparison_rejects_swapped_queries_and_keys():
    # The equality test must be able to fail: swapping the query and key blocks of
    # in_proj_weight gives softmax(K Q^T) instead of softmax(Q K^T).
    ref, ours = _pair(8, 2)
    with torch.no_grad():
        w = ours.in_proj_weight
        w[:16] = torch.cat([w[8:16].clone(), w[:8].clone()])
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(ours(x), _torch_call(ref, x), **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhsa_dropout_only_in_training(backend):
    torch.manual_seed(0)
    ours = set_backend(MultiHeadSelfAttention(8, 2, dropout=1.0), backend)
    with torch.no_grad():
        ours.out_proj.bias.normal_()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        # Every attention weight dropped: what is left is the output projection's bias.
        torch.testing.assert_close(ours.train()(x), ours.out_proj.bias.expand(2, 5, 8))
        assert not torch.allclose(ours.eval()(x), ours.out_proj.bias.expand(2, 5, 8))


def test_mhsa_errors():
    with pytest.raises(ValueError, match=r"embed_dim=10.*num_heads=4"):
        MultiHeadSelfAttention(10, 4)
    attention = MultiHeadSelfAttention(8, 2)
    with pytest.raises(ValueError, match=r"3-D.*\(5, 8\)"):
        attention(torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"embed_dim=8.*\(2, 5, 6\)"):
        attention(torch.randn(2, 5, 6))
    with pytest.raises(TypeError, match="torch.Tensor"):
        attention([[1.0] * 8])
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadSelfAttention(8, 0)


# ---------------------------------------------------------------- patch embedding

def _conv_reference(x, weight, bias, p):
    return F.conv2d(x, weight, bias, stride=p).flatten(2).transpose(1, 2)  # (B, N, D)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(patch=st.integers(1, 5), grid=st.integers(1, 4), channels=st.integers(1, 3),
       embed_dim=st.integers(1, 8), batch=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_patch_embedding_equals_conv_and_patchify_matmul(backend, patch, grid, channels, embed_dim, batch, seed):
    torch.manual_seed(seed)
    size = patch * grid
    embed = set_backend(PatchEmbedding(size, patch, channels, embed_dim).double(), backend)
    with torch.no_grad():
        embed.bias.normal_()
    x = torch.randn(batch, channels, size, size, dtype=torch.float64)

    out = embed(x)
    assert out.shape == (batch, grid * grid, embed_dim)
    torch.testing.assert_close(embed.feature_map(x), F.conv2d(x, embed.weight, embed.bias, stride=patch), **TOL)
    torch.testing.assert_close(out, _conv_reference(x, embed.weight, embed.bias, patch), **TOL)

    flat = patchify(x, patch)  # (B, N, C*p*p)
    assert flat.shape == (batch, grid * grid, channels * patch * patch)
    by_matmul = flat @ embed.weight.reshape(embed_dim, -1).T + embed.bias
    torch.testing.assert_close(by_matmul, out, **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_patch_embedding_gradient_equals_conv(backend):
    torch.manual_seed(1)
    embed = set_backend(PatchEmbedding(12, 4, 3, 5).double(), backend)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 9, 5, dtype=torch.float64)
    (embed(x) * g).sum().backward()
    grads = (x.grad.clone(), embed.weight.grad.clone(), embed.bias.grad.clone())
    x.grad = None
    weight = embed.weight.detach().clone().requires_grad_(True)
    bias = embed.bias.detach().clone().requires_grad_(True)
    (_conv_reference(x, weight, bias, 4) * g).sum().backward()
    for ours, ref in zip(grads, (x.grad, weight.grad, bias.grad)):
        torch.testing.assert_close(ours, ref, **TOL)


def test_patchify_order_is_row_major_then_channel_row_col():
    x = torch.arange(2 * 3 * 6 * 4, dtype=torch.float32).reshape(2, 3, 6, 4)
    flat = patchify(x, 2)
    assert flat.shape == (2, 6, 12)
    for i in range(3):
        for j in range(2):
            patch = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]  # (B, C, p, p)
            torch.testing.assert_close(flat[:, i * 2 + j], patch.reshape(2, -1))


def test_patch_embedding_errors():
    with pytest.raises(ValueError, match=r"image_size=30.*patch_size=16"):
        PatchEmbedding(30, 16, 3, 8)
    embed = PatchEmbedding(8, 4, 3, 6)
    with pytest.raises(ValueError, match=r"expected 3 input channels, got 1"):
        embed(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"4-D.*\(3, 8, 8\)"):
        embed(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"10x8.*patch_size=4"):
        embed(torch.randn(1, 3, 10, 8))
    with pytest.raises(ValueError, match=r"9x9.*patch_size=2"):
        patchify(torch.randn(1, 3, 9, 9), 2)
    with pytest.raises(ValueError, match=r"4-D.*\(9, 9\)"):
        patchify(torch.randn(9, 9), 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        patchify("image", 3)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", BACKENDS)
def test_mhsa_on_cuda_matches_torch(backend):
    ref, ours = _pair(16, 4)
    ref, ours = ref.float().cuda(), set_backend(ours.float().cuda(), backend)
    x = torch.randn(2, 7, 16, device="cuda")
    with torch.no_grad():
        out_ref, w_ref = ref(x, x, x, need_weights=True, average_attn_weights=False)
        out, w = ours(x, need_weights=True)
        plain = ours(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(plain, out_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-4)
