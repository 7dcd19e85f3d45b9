"""Parameter and multiply-add counts against torchvision's published figures and hand counts."""
import pytest
import torch
import torchvision
from torch import nn

from labcode.flops import Counts, count, format_table, layer_table
from labcode.models.alexnet import alexnet, alexnet2012
from paper_tables import (  # tests/paper_tables.py
    ALEXNET_2012_PARAMS,
    ALEXNET_PARAMS,
    EFFICIENTNET_V2_PARAMS,
    EFFICIENTNET_V2_S_GMACS_384,
    VIT_PARAMS,
)


def _conv_macs(c_in, c_out, k, out_hw, groups=1):
    return out_hw * out_hw * c_out * (c_in // groups) * k * k


@pytest.fixture(scope="module")
def paper_net():
    with torch.device("meta"):
        return alexnet2012()


def test_alexnet2012_table_adds_up_to_the_paper(paper_net):
    rows = layer_table(paper_net, (3, 227, 227))
    assert sum(r.params for r in rows) == ALEXNET_2012_PARAMS
    # hand count: conv MACs = H_out * W_out * C_out * (C_in / groups) * k * k, FC = in * out
    expected = (
        _conv_macs(3, 96, 11, 55)
        + _conv_macs(96, 256, 5, 27, groups=2)
        + _conv_macs(256, 384, 3, 13)
        + _conv_macs(384, 384, 3, 13, groups=2)
        + _conv_macs(384, 256, 3, 13, groups=2)
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000
    )
    assert sum(r.macs for r in rows) == expected
    assert count(paper_net, (3, 227, 227)) == Counts(params=ALEXNET_2012_PARAMS, macs=expected)
    convs = [r for r in rows if r.type == "Conv2d"]
    assert [r.output_shape for r in convs] == [
        (1, 96, 55, 55), (1, 256, 27, 27), (1, 384, 13, 13), (1, 384, 13, 13), (1, 256, 13, 13),
    ]
    assert convs[0].name == "features.0" and convs[0].params == 96 * 3 * 11 * 11 + 96
    text = format_table(rows)
    assert f"{ALEXNET_2012_PARAMS:,}" in text and f"{expected:,}" in text and "LocalResponseNorm" in text


def test_alexnet_matches_torchvision_metadata():
    meta = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta
    with torch.device("meta"):  # shapes are all the counter needs: no memory, no init
        model = alexnet()
    counts = count(model, (1, 3, 224, 224))
    assert counts.params == meta["num_params"] == ALEXNET_PARAMS
    assert counts.macs / 1e9 == pytest.approx(meta["_ops"], rel=1e-3)  # 0.714 G
    assert counts.flops == 2 * counts.macs


def test_efficientnet_v2_s_at_384_matches_torchvision_metadata():
    from labcode.models.efficientnet import efficientnet_v2_s

    meta = torchvision.models.EfficientNet_V2_S_Weights.IMAGENET1K_V1.meta
    with torch.device("meta"):
        model = efficientnet_v2_s()
    counts = count(model, (3, 384, 384))
    assert counts.params == EFFICIENTNET_V2_PARAMS["s"]
    assert counts.macs / 1e9 == pytest.approx(EFFICIENTNET_V2_S_GMACS_384, rel=2e-3)
    assert counts.macs / 1e9 == pytest.approx(meta["_ops"], rel=1e-3)


def _vit_macs(image, patch, layers, dim, mlp, classes):
    n = (image // patch) ** 2 + 1  # patches + class token
    per_layer = n * dim * 3 * dim + n * dim * dim + 2 * n * dim * mlp  # qkv, out projection, MLP
    attention = 2 * n * n * dim  # Q K^T and A V, all heads together
    patches = (image // patch) ** 2 * dim * 3 * patch * patch
    return patches + layers * (per_layer + attention) + dim * classes, layers * attention


@pytest.mark.parametrize("training", [False, True])
def test_vit_attention_products_are_counted(training):
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    vit.train(training)
    expected, attention = _vit_macs(32, 8, 2, 32, 64, 10)
    fast_path_before = torch.backends.mha.get_fastpath_enabled()
    counts = count(vit, (3, 32, 32))
    assert counts.macs == expected  # a counter blind to attention would give expected - attention
    assert attention > 0
    assert vit.training == training  # mode restored
    assert torch.backends.mha.get_fastpath_enabled() == fast_path_before
    rows = layer_table(vit, (3, 32, 32))
    assert sum(r.macs for r in rows) == expected
    assert sum(r.params for r in rows) == sum(p.numel() for p in vit.parameters())
    own = [r for r in rows if r.type == "MultiheadAttention (own)"]
    assert len(own) == 2  # in-projection and attention live in MultiheadAttention itself
    assert any(r.name == "" and r.params == 32 for r in rows)  # the class token


def test_counting_leaves_a_training_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    model(torch.randn(2, 3, 8, 8))  # moves the batch-norm statistics away from their start
    before = {k: v.clone() for k, v in model.state_dict().items()}
    counts = count(model, (2, 3, 8, 8))
    assert counts.macs == 2 * (36 * 8 * 27 + 288 * 4)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # batch-norm statistics not updated


def test_depth_selects_rows():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), nn.Flatten(), nn.Linear(4 * 26 * 26, 2))
    top = layer_table(model, (1, 28, 28), depth=1)
    assert [r.name for r in top] == ["0", "1", "2"]
    assert top[0].params == 4 * 9 + 4 and top[0].output_shape == (1, 4, 26, 26)
    leaves = layer_table(model, (1, 28, 28))
    assert [r.name for r in leaves] == ["0.0", "0.1", "1", "2"]


@pytest.mark.parametrize("shape", [(3, 224), (0, 3, 8, 8), "3x224x224", (1, 3, 8.0, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        count(nn.Conv2d(3, 4, 3), shape)


def test_bad_model_and_depth():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        count(lambda x: x, (3, 8, 8))
    with pytest.raises(ValueError, match="depth"):
        layer_table(nn.Conv2d(3, 4, 3), (3, 8, 8), depth=0)


def test_vit_b_16_matches_torchvision_metadata():
    # torchvision publishes 17.564 G multiply-adds; a count blind to the attention products
    # gives 16.85 G (training mode on a CPU) or 11.27 G (eval mode under no_grad).
    meta = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.meta
    with torch.device("meta"):
        vit = torchvision.models.vit_b_16()
    counts = count(vit, (3, 224, 224))
    assert counts.params == meta["num_params"] == VIT_PARAMS["vit_b_16"]
    assert counts.macs / 1e9 == pytest.approx(meta["_ops"], rel=1e-3)


@pytest.mark.gpu
def test_counts_on_cuda_equal_counts_on_cpu():
    # On CUDA the fused attention kernels differ from the CPU's; the count must not.
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    expected, _ = _vit_macs(32, 8, 2, 32, 64, 10)
    assert count(vit.cuda(), (3, 32, 32)).macs == expected
    assert count(alexnet2012().cuda(), (3, 227, 227)).params == ALEXNET_2012_PARAMS
