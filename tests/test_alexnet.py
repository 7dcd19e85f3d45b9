"""AlexNet against torchvision's, the 2012 paper's network, the small one, and the input checks."""
import math

import pytest
import torch
import torchvision
from torch import nn

from labcode.layers import set_backend
from labcode.models.alexnet import AlexNet, AlexNet2012, alexnet, alexnet2012, alexnet_small, conv_table

TORCHVISION_ALEXNET_PARAMS = 61_100_840  # FACTS.md, torchvision 0.29.1
PAPER_2012_PARAMS = 60_965_224  # FACTS.md


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fast_reference(num_classes: int) -> nn.Module:
    """torchvision's alexnet with quick random weights (building it on 'meta' skips the slow init)."""
    with torch.device("meta"):
        ref = torchvision.models.alexnet(num_classes=num_classes)
    ref = ref.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    for p in ref.parameters():
        fan_in = p[0].numel() if p.ndim > 1 else 1
        p.data.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
    return ref.eval()


@pytest.mark.parametrize("num_classes", [1000, 10])
def test_torchvision_weights_load_and_give_same_outputs(num_classes):
    ref = _fast_reference(num_classes)
    with torch.device("meta"):
        model = alexnet(num_classes=num_classes)
    model = model.to_empty(device="cpu")
    model.load_state_dict(ref.state_dict(), strict=True)
    model.eval()
    assert _n_params(model) == _n_params(ref)
    x = torch.randn(2, 3, 63, 63)  # the smallest size torchvision's alexnet accepts
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def single_tower():
    torch.manual_seed(0)
    return alexnet().eval()


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return alexnet2012().eval()


def test_real_construction_matches_torchvision_count(single_tower):
    assert _n_params(single_tower) == TORCHVISION_ALEXNET_PARAMS
    # our own init produced a usable net: finite outputs at 224 px
    with torch.no_grad():
        out = single_tower(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_torchvision_state_dict_does_not_fit_the_2012_network():
    with torch.device("meta"):
        ref = torchvision.models.alexnet()
        model = alexnet2012()
    with pytest.raises(RuntimeError):
        model.load_state_dict(ref.state_dict(), strict=True)


def test_alexnet2012_has_the_papers_parameter_count_and_shapes(paper_net):
    model = paper_net
    assert _n_params(model) == PAPER_2012_PARAMS
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # the two towers
    assert convs[0].kernel_size == (11, 11) and convs[0].stride == (4, 4)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping pooling
    # 227 -> 55 -> 27 -> 13 -> 6, as in the paper
    sizes = []
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                sizes.append(x.shape[-1])
    assert sizes == [55, 27, 27, 13, 13, 13, 13, 6]
    assert x.shape == (1, 256, 6, 6)
    # the printable table agrees with the network
    table = conv_table()
    assert [r["out_size"] for r in table] == [27, 13, 13, 13, 6]
    assert [r["params"] for r in table] == [c.weight.numel() + c.bias.numel() for c in convs]
    with pytest.raises(ValueError, match="too small"):
        conv_table(size=31)


def test_alexnet2012_lrn_follows_the_papers_formula(paper_net):
    lrn = [m for m in paper_net.features if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrn) == 2
    # b_c = a_c / (k + alpha * sum_{|j - c| <= n/2} a_j^2)^beta with k=2, n=5, alpha=1e-4, beta=0.75
    a = torch.randn(2, 12, 4, 4, dtype=torch.float64) * 30
    sq = torch.nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))  # zero channels at both ends
    window = sum(sq[:, j : j + 12] for j in range(5))
    expected = a / (2.0 + 1e-4 * window).pow(0.75)
    torch.testing.assert_close(lrn[0](a), expected)
    torch.testing.assert_close(lrn[1](a), expected)


@pytest.mark.parametrize("which,size", [("single_tower", 63), ("paper_net", 67)])
def test_scratch_backend_gives_torchs_outputs(which, size, request):
    model = request.getfixturevalue(which)
    x = torch.randn(2, 3, size, size)
    try:
        with torch.no_grad():
            expected = model(x)
            set_backend(model, "scratch")
            got = model(x)
        switched = [m for m in model.modules() if hasattr(m, "backend")]
        assert len(switched) == 5 + 3 + 3  # convs, linears, max pools
        assert all(m.backend == "scratch" for m in switched)
    finally:
        set_backend(model, "torch")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32)])
def test_small_model_shapes_and_size(in_channels, size):
    model = alexnet_small(num_classes=10, in_channels=in_channels)
    assert _n_params(model) < 300_000
    out = model(torch.randn(4, in_channels, size, size))
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_wrong_channels_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match=r"expected 1 input channels, got 3"):
        alexnet_small()(torch.randn(2, 3, 28, 28))
    with torch.device("meta"):  # the check comes before any computation
        paper = AlexNet2012()
    with pytest.raises(ValueError, match=r"expected 3 input channels, got 1"):
        paper(torch.randn(1, 1, 227, 227, device="meta"))
    with pytest.raises(ValueError, match=r"4-D"):
        alexnet_small()(torch.randn(1, 28, 28))


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        AlexNet(num_classes=bad)
    with pytest.raises(ValueError, match="num_classes"):
        alexnet_small(num_classes=bad)


@pytest.mark.gpu
@pytest.mark.parametrize("builder,shape", [(alexnet_small, (8, 1, 28, 28)), (alexnet, (2, 3, 224, 224)), (alexnet2012, (2, 3, 227, 227))])
def test_cuda_gives_the_cpu_outputs(builder, shape):
    torch.manual_seed(0)
    model = builder(num_classes=10).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        got = model.cuda()(x.cuda()).cpu()
    # cuDNN may use TF32 for convolutions: compare at that precision
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2 * expected.abs().max().item())
    model.train()
    loss = model(x.cuda()).logsumexp(dim=1).mean()
    loss.backward()
    assert all(p.grad.is_cuda for p in model.parameters())
