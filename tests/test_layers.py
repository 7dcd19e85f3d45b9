"""labcode.layers: with the "scratch" backend each layer equals its "torch" self, in
output and gradient, and keeps torch's parameters and state-dict keys."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from labcode.layers import AvgPool2d, Conv2d, Linear, MaxPool2d, set_backend

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def outputs_and_grads(module, x):
    x = x.clone().requires_grad_()
    module.zero_grad()
    out = module(x)
    grad = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    out.backward(grad)
    params = [p.grad.clone() for p in module.parameters()]
    return out.detach(), x.grad, params


def assert_backends_agree(module, x):
    set_backend(module, "torch")
    reference = outputs_and_grads(module, x)
    set_backend(module, "scratch")
    ours = outputs_and_grads(module, x)
    assert all(m.scratch for m in module.modules() if hasattr(m, "scratch"))
    torch.testing.assert_close(ours[0], reference[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours[1], reference[1], rtol=1e-9, atol=1e-9)
    assert len(ours[2]) == len(reference[2])
    for a, b in zip(ours[2], reference[2]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


CONVS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=3, out_channels=8, kernel_size=5, stride=2, padding=2, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), padding="same", dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="valid"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="full", dilation=(1, 2)),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=1, groups=2),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=8),
    dict(in_channels=3, out_channels=16, kernel_size=4, stride=4),
]


@pytest.mark.parametrize("kwargs", CONVS)
def test_conv2d_backends_agree(kwargs):
    torch.manual_seed(0)
    conv = Conv2d(**kwargs).double()
    x = torch.randn(2, kwargs["in_channels"], 11, 12, dtype=torch.float64)
    assert_backends_agree(conv, x)


@pytest.mark.parametrize("kwargs", CONVS)
def test_conv2d_is_torchs_conv(kwargs):
    ours = Conv2d(**kwargs)
    torch_kwargs = dict(kwargs)
    if kwargs.get("padding") == "full":
        torch_kwargs["padding"] = (2, 4)  # d(k - 1) for k 3, d (1, 2)
    theirs = nn.Conv2d(**torch_kwargs)
    assert isinstance(ours, nn.Conv2d)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape
    ours.load_state_dict(theirs.state_dict())  # torch's weights load unchanged
    x = torch.randn(1, kwargs["in_channels"], 11, 12)
    torch.testing.assert_close(set_backend(ours, "scratch")(x), theirs(x), rtol=1e-4, atol=1e-4)


def test_conv2d_same_init_as_torch():
    torch.manual_seed(3)
    ours = Conv2d(4, 6, 3)
    torch.manual_seed(3)
    theirs = nn.Conv2d(4, 6, 3)
    torch.testing.assert_close(ours.weight, theirs.weight)
    torch.testing.assert_close(ours.bias, theirs.bias)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backends_agree(bias):
    torch.manual_seed(0)
    layer = Linear(7, 5, bias).double()
    assert_backends_agree(layer, torch.randn(3, 4, 7, dtype=torch.float64))
    assert layer.state_dict().keys() == nn.Linear(7, 5, bias).state_dict().keys()
    assert isinstance(layer, nn.Linear)


@pytest.mark.parametrize("cls, torch_cls", [(MaxPool2d, nn.MaxPool2d), (AvgPool2d, nn.AvgPool2d)])
@pytest.mark.parametrize("args", [(3, 2), (3, 2, 1), (2,), ((3, 2), (2, 1), (1, 0))])
def test_pool_backends_agree(cls, torch_cls, args):
    torch.manual_seed(0)
    pool = cls(*args)
    assert isinstance(pool, torch_cls)
    assert_backends_agree(pool, torch.randn(2, 3, 11, 10, dtype=torch.float64))
    x = torch.randn(2, 3, 11, 10)
    torch.testing.assert_close(set_backend(pool, "scratch")(x), torch_cls(*args)(x))


def test_set_backend_reaches_nested_layers():
    torch.manual_seed(0)
    model = nn.Sequential(
        Conv2d(3, 8, 3, padding=1), nn.ReLU(), MaxPool2d(3, 2),
        Conv2d(8, 8, 3, padding=1, groups=8), AvgPool2d(2), nn.Flatten(), Linear(8 * 3 * 3, 4),
    ).double()
    assert_backends_agree(model, torch.randn(2, 3, 14, 14, dtype=torch.float64))
    switchable = [m for m in model.modules() if isinstance(m, (Conv2d, Linear, MaxPool2d, AvgPool2d))]
    assert len(switchable) == 5 and all(m.scratch for m in switchable)
