"""Tests for chapter 3's drawing helpers (labcode.figures.ch3) and patch explorer (labcode.widgets.patches).

Headless (Agg). What the pictures show is checked against torch: patches against
F.unfold, multiply-adds against torch's FlopCounterMode on real encoder blocks (labcode's
and torchvision's), sequence lengths against the models' position embeddings, cosine
similarities against F.cosine_similarity.
"""
import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from labcode.figures import ch3  # noqa: E402
from labcode.models.vit import SIZES, EncoderBlock, ViTConfig, VisionTransformer, vit_small  # noqa: E402
from paper_tables import VIT_B_16_GMACS_224  # noqa: E402  (tests/paper_tables.py)

BASE = SIZES["ViT-Base"]  # the model's own configuration: D = 768, MLP 3072, 12 blocks


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lines(ax, gid):
    return [line for line in ax.get_lines() if line.get_gid() == gid]


# --------------------------------------------------------------------------- patches


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3]))
def test_patch_grid_counts_the_patches_unfold_makes(p, h, w, c):
    image = torch.rand(c, h, w)
    fig = matplotlib.figure.Figure()
    ax = fig.add_subplot()
    rows, cols = ch3.draw_patch_grid(ax, image, p)
    unfold_count = F.unfold(image[None], kernel_size=p, stride=p).shape[-1] if min(h, w) >= p else 0
    assert rows * cols == unfold_count
    assert len(_lines(ax, "patch_line")) == max(rows - 1, 0) + max(cols - 1, 0)
    cut = [q for q in ax.patches if q.get_gid() == "cut"]
    assert len(cut) == (w % p != 0) + (h % p != 0)


def test_patch_grid_numbers_the_first_patches_row_by_row():
    fig = matplotlib.figure.Figure()
    ax = fig.add_subplot()
    ch3.draw_patch_grid(ax, torch.rand(3, 32, 48), 8, numbers=7)
    outlines = [(int(q.get_x()), int(q.get_y())) for q in ax.patches if q.get_gid() == "patch_outline"]
    assert outlines == [(0, 0), (8, 0), (16, 0), (24, 0), (32, 0), (40, 0), (0, 8)]
    assert [t.get_text() for t in ax.texts if t.get_gid() == "patch_number"] == [str(i) for i in range(1, 8)]


def test_patches_figure_shows_the_patches_unfold_cuts_in_order():
    image = torch.rand(3, 40, 36)
    p, show = 8, 5
    fig = ch3.patches_figure(image, p, show=show)
    shown = [im.get_array() for ax in fig.axes for im in ax.images if im.get_gid() == "patch"]
    assert len(shown) == show
    crop = image[:, :40, :32]
    columns = F.unfold(crop[None], kernel_size=p, stride=p)[0].T  # (N, C*p*p), row-major patches
    for i, pixels in enumerate(shown):
        expected = columns[i].reshape(3, p, p).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(np.asarray(pixels), expected, rtol=0, atol=1e-6)
    flat = [im.get_array() for ax in fig.axes for im in ax.images if im.get_gid() == "flat"]
    np.testing.assert_allclose(np.asarray(flat[0]), columns[:show].numpy(), atol=1e-6)


def test_square_photo_is_a_square_image_in_range():
    image = ch3.square_photo(64)
    assert image.shape == (3, 64, 64)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.std()) > 0.05  # a photograph, not a flat colour


def test_bad_inputs_name_what_was_expected():
    fig = matplotlib.figure.Figure()
    ax = fig.add_subplot()
    with pytest.raises(ValueError, match=r"\(C, H, W\).*got shape \(1, 3, 8, 8\)"):
        ch3.draw_patch_grid(ax, torch.rand(1, 3, 8, 8), 4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        ch3.draw_patch_grid(ax, np.zeros((3, 8, 8)), 4)
    with pytest.raises(ValueError, match="patch_size must be a positive int, got 0"):
        ch3.patches_figure(torch.rand(3, 8, 8), 0)
    with pytest.raises(ValueError, match="multiple of patch_size=16, got|must be a multiple"):
        ch3.cost_table([100], patch_size=16)
    with pytest.raises(ValueError, match=r"\(g, g, g, g\)"):
        ch3.position_similarity_figure(torch.rand(4, 4, 4))
    with pytest.raises(ValueError, match="square grid"):
        ch3.class_attention_figure(torch.rand(2, 1, 8, 8), torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"\(B, h, T, T\)"):
        ch3.attention_rollout([torch.rand(1, 2, 3, 4)])
    with pytest.raises(ValueError, match="must not be empty"):
        ch3.data_size_figure([])


# --------------------------------------------------------------------------- overview


@pytest.mark.parametrize("grid", [2, 3, 4])
def test_overview_has_one_token_per_patch_plus_the_class_token(grid):
    fig = ch3.vit_overview_figure(torch.rand(3, 32 * grid, 32 * grid), grid=grid)
    main = fig.axes[0]
    patches = [im for im in main.images if im.get_gid() == "overview_patch"]
    tokens = [q for q in main.patches if q.get_gid() == "token"]
    cls = [q for q in main.patches if q.get_gid() == "class_token"]
    positions = [t.get_text() for t in main.texts if t.get_gid() == "position_text"]
    assert len(patches) == len(tokens) == grid * grid
    assert len(cls) == 1
    assert positions == [str(i) for i in range(grid * grid + 1)]
    words = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    for name in ("linear projection", "Transformer encoder", "MLP head", "LayerNorm",
                 "multi-head\nself-attention", "MLP (GELU)"):
        assert name in words
    # two residual additions in the block, and two skip paths feeding them
    block = fig.axes[-1]
    assert len([t for t in block.texts if t.get_gid() == "residual"]) == 2
    assert len(_lines(block, "skip")) == 2


def test_overview_ends_the_encoder_with_layernorm_and_does_not_call_square_patches_flattened():
    fig = ch3.vit_overview_figure(torch.rand(3, 96, 96), grid=3)
    main = fig.axes[0]

    def box(gid):
        found = [q for q in main.patches if q.get_gid() == gid]
        assert len(found) == 1, f"expected one box {gid!r}, found {len(found)}"
        return found[0]

    encoder, norm, head = box("encoder"), box("final_norm"), box("head")
    label = [t.get_text() for t in main.texts if t.get_gid() == "final_norm_text"]
    assert label == ["LayerNorm"]
    # bottom to top: encoder, then the final LayerNorm, then the head
    assert encoder.get_y() + encoder.get_height() < norm.get_y()
    assert norm.get_y() + norm.get_height() < head.get_y()
    # the patches are drawn as squares: only the projection step may speak of flattening
    flattening = [t for t in main.texts if "flatten" in t.get_text()]
    assert [t.get_gid() for t in flattening] == ["projection_text"]
    plt.close(fig)


# --------------------------------------------------------------------------- cost


def _counted_macs(block, x, **kwargs):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        block(x, **kwargs)
    return counter.get_total_flops() // 2


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 40), st.sampled_from([(8, 1), (16, 2), (24, 4), (32, 4)]), st.sampled_from([1, 2, 4]))
def test_encoder_block_macs_equal_torch_flop_counter(tokens, dims, mlp_ratio):
    d, heads = dims
    block = EncoderBlock(d, heads, d * mlp_ratio, 0.0, 0.0).eval()
    x = torch.randn(1, tokens, d)
    counted = _counted_macs(block, x, need_weights=True)  # plain matmuls: visible to the counter
    assert ch3.encoder_block_macs(tokens, d, d * mlp_ratio)["total"] == counted


def test_encoder_block_macs_equal_torchvision_block():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torchvision.models.vision_transformer import EncoderBlock as TVBlock

    block = TVBlock(4, 64, 128, 0.0, 0.0, norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6)).train()
    x = torch.randn(1, 17, 64)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            counted = _counted_macs(block, x)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert ch3.encoder_block_macs(17, 64, 128)["total"] == counted


def test_cost_table_matches_the_models_sequence_length():
    rows = ch3.cost_table([32, 64, 224], patch_size=16, hidden_dim=32, mlp_dim=64)
    for row in rows:
        model = VisionTransformer(ViTConfig(image_size=row["image_size"], patch_size=16, num_layers=1,
                                            num_heads=2, hidden_dim=32, mlp_dim=64))
        assert row["tokens"] == model.encoder.pos_embedding.shape[1]
        assert row["attention_entries"] == row["tokens"] ** 2
        x = torch.randn(1, row["tokens"], 32)
        block = model.encoder.layers[0].eval()
        assert row["block_macs"] == _counted_macs(block, x, need_weights=True)
    fig = ch3.cost_figure(rows)
    quad = _lines(fig.axes[1], "quadratic")[0].get_ydata()
    assert list(quad) == [2 * r["tokens"] ** 2 * 32 for r in rows]


# --------------------------------------------------------------------------- what a ViT learned


def test_position_similarity_figure_shows_cosine_similarities():
    torch.manual_seed(0)
    model = vit_small(patch_size=7)  # 4 x 4 patches
    sim = model.position_similarity()
    fig = ch3.position_similarity_figure(sim)
    maps = [im.get_array() for ax in fig.axes for im in ax.images if im.get_gid() == "similarity"]
    assert len(maps) == 16
    pos = model.encoder.pos_embedding[0, 1:].detach()  # (16, D)
    expected = F.cosine_similarity(pos[:, None], pos[None], dim=-1)  # (16, 16)
    for k, shown in enumerate(maps):
        np.testing.assert_allclose(np.asarray(shown).ravel(), expected[k].numpy(), atol=1e-5)


def test_attention_rollout_against_explicit_products():
    torch.manual_seed(1)
    maps = [torch.rand(2, 3, 5, 5).softmax(-1) for _ in range(3)]
    rolled = ch3.attention_rollout(maps, residual=0.5)
    expected = torch.eye(5).expand(2, 5, 5)
    for a in maps:
        expected = (0.5 * torch.eye(5) + 0.5 * a.mean(1)) @ expected
    torch.testing.assert_close(rolled, expected)
    torch.testing.assert_close(rolled.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(ch3.attention_rollout(maps[:1], residual=0.0), maps[0].mean(1))
    torch.testing.assert_close(ch3.attention_rollout(maps, residual=1.0), torch.eye(5).expand(2, 5, 5))


def test_class_attention_figure_overlays_each_map_on_its_image():
    images = torch.rand(3, 1, 28, 28)
    attention = torch.rand(3, 49)
    fig = ch3.class_attention_figure(images, attention, titles=["a", "b", "c"])
    heat = [im.get_array() for ax in fig.axes for im in ax.images if im.get_gid() == "attention"]
    assert len(heat) == 3
    for i, shown in enumerate(heat):
        grid = np.asarray(shown)[::4, ::4]  # one pixel per patch (nearest upsampling by 4)
        expected = attention[i].reshape(7, 7) / attention[i].max()
        np.testing.assert_allclose(grid, expected.numpy(), atol=1e-6)


# --------------------------------------------------------------------------- experiments


def test_data_size_figure_plots_the_mean_over_seeds():
    rows = [{"model": m, "n_train": n, "seed": s, "acc": a}
            for m, base in (("cnn", 0.8), ("vit", 0.6))
            for n in (100, 400, 1600) for s, a in ((0, base + n / 1e4), (1, base + n / 2e4))]
    fig = ch3.data_size_figure(rows)
    ax = fig.axes[0]
    for m in ("cnn", "vit"):
        line = _lines(ax, f"line_{m}")[0]
        assert list(line.get_xdata()) == [100, 400, 1600]
        expected = [100 * np.mean([r["acc"] for r in rows if r["model"] == m and r["n_train"] == n])
                    for n in (100, 400, 1600)]
        np.testing.assert_allclose(line.get_ydata(), expected)
    assert ax.get_xscale() == "log"


def test_compute_figure_draws_one_line_per_model_size_on_log_x():
    rows = [{"family": f, "size": s, "compute": c * 10 ** k, "acc": 0.5 + 0.1 * k}
            for f in ("cnn", "vit") for s, c in (("small", 1), ("wide", 4)) for k in range(3)]
    fig = ch3.compute_figure(rows)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    runs = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("run_")]
    assert len(runs) == 4
    wide = _lines(ax, "run_vit_wide")[0]
    assert list(wide.get_xdata()) == [4, 40, 400]
    np.testing.assert_allclose(wide.get_ydata(), [50, 60, 70])


# --------------------------------------------------------------------------- the explorer


def test_explorer_offers_exactly_the_patch_sizes_that_tile_the_image():
    from labcode.widgets.patches import PatchExplorer, divisors

    assert divisors(224) == [p for p in range(2, 113) if 224 % p == 0]
    explorer = PatchExplorer(patch_size=16, image=torch.rand(3, 48, 48))
    assert list(explorer.slider.options) == [2, 3, 4, 6, 8, 12, 16, 24]


@pytest.mark.parametrize("p", [8, 16, 32])
def test_explorer_report_matches_the_model_and_updates_with_the_slider(p):
    from labcode.widgets.patches import PatchExplorer, patch_report

    explorer = PatchExplorer(patch_size=32)
    explorer.slider.value = p
    config = ViTConfig(image_size=224, patch_size=p)
    report = patch_report(224, p)
    assert report["tokens"] == config.seq_length
    assert report["attention_entries"] == config.seq_length ** 2
    assert report["block_macs"] == ch3.encoder_block_macs(config.seq_length, BASE.hidden_dim, BASE.mlp_dim)["total"]
    assert f"{config.seq_length:,} tokens" in explorer.label.value
    fig = explorer.figure()
    g = 224 // p
    assert len(_lines(fig.axes[0], "patch_line")) == 2 * (g - 1)
    assert f"{g * g:,} patches" in fig.axes[0].get_title()


def test_explorer_rejects_a_patch_size_that_does_not_tile():
    from labcode.widgets.patches import PatchExplorer, patch_report

    with pytest.raises(ValueError, match=r"patch_size must be one of \[.*\] for a 224x224 image, got 15"):
        PatchExplorer(patch_size=15)
    with pytest.raises(ValueError, match="divisible by patch_size=15"):
        patch_report(224, 15)


def test_vit_b16_cost_matches_the_paper_order_of_magnitude():
    # 12 blocks of ViT-B/16 at 224 px plus the patch embedding: the paper's ~17.6 G multiply-adds
    per_block = ch3.encoder_block_macs(197, BASE.hidden_dim, BASE.mlp_dim)["total"]
    total = BASE.num_layers * per_block + 196 * BASE.hidden_dim * 3 * 16 * 16
    assert math.isclose(total / 1e9, VIT_B_16_GMACS_224, rel_tol=0.01)
