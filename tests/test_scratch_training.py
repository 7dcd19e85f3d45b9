"""Every model trains on labcode's own layers exactly as on torch's kernels.

One training step of every builder (the course-scale `*_small` variants and one full-size
model per family at a small input), in training mode (dropout, batch norm's batch
statistics, stochastic depth all active), with the "scratch" backend and with the
"torch" backend from the same weights and the same random state: the loss and every
parameter's gradient must agree. Run at batch sizes 1 and 3, on contiguous and on
channels_last input, and under CPU autocast (bfloat16), the settings `fit` and a Colab
GPU use.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from labcode import models
from labcode.layers import set_backend

pytestmark = pytest.mark.usefixtures("one_thread")

# builder, its arguments, the input (C, H, W). Full-size models run at a small input so the
# test stays fast; their layers (and so their kernels) are the real ones.
BUILDERS = {
    "alexnet_small": (models.alexnet_small, {}, (1, 28, 28)),
    "efficientnet_v2_small": (models.efficientnet_v2_small, {}, (1, 28, 28)),
    "vit_small": (models.vit_small, {}, (1, 28, 28)),
    "alexnet": (models.alexnet, {"num_classes": 10}, (3, 127, 127)),
    "alexnet2012": (models.alexnet2012, {"num_classes": 10}, (3, 127, 127)),
    "efficientnet_v2_s": (models.efficientnet_v2_s, {"num_classes": 10}, (3, 64, 64)),
    "vit_b_16": (models.vit_b_16, {"num_classes": 10, "image_size": 32}, (3, 32, 32)),
}


def one_step(model, x, y, backend: str, autocast: bool):
    """Loss and the gradient of every parameter after one forward and backward pass."""
    set_backend(model, backend)
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1234)  # the same dropout masks and stochastic-depth draws
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return loss.detach().float(), grads


def assert_steps_agree(name, batch, channels_last, autocast):
    build, kwargs, shape = BUILDERS[name]
    torch.manual_seed(0)
    model = build(**kwargs)
    twin = copy.deepcopy(model)
    x = torch.randn(batch, *shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
        twin = twin.to(memory_format=torch.channels_last)
    y = torch.arange(batch) % 10

    loss_t, grads_t = one_step(model, x, y, "torch", autocast)
    loss_s, grads_s = one_step(twin, x, y, "scratch", autocast)

    # float32: both backends sum the same products in a different order; bfloat16
    # rounds every product to 8 bits of mantissa, so differences grow to about 1e-2.
    rtol = 3e-2 if autocast else 1e-4
    assert torch.isfinite(loss_s), f"{name}: scratch loss is {loss_s}"
    torch.testing.assert_close(loss_s, loss_t, rtol=rtol, atol=rtol)
    assert grads_s.keys() == grads_t.keys()
    missing = [k for k, g in grads_t.items() if (g is None) != (grads_s[k] is None)]
    assert not missing, f"{name}: gradient present in one backend only: {missing}"
    # Some gradients are nearly zero by cancellation (a bias followed by batch norm only
    # matters at the padded border): compare each against the larger of its own largest
    # entry and a small share of the largest gradient in the whole model.
    floor = 1e-4 * max(g.abs().max() for g in grads_t.values() if g is not None)
    for key, g_t in grads_t.items():
        if g_t is None:
            continue
        g_s = grads_s[key]
        assert g_s.shape == g_t.shape
        assert torch.isfinite(g_s).all(), f"{name}: non-finite gradient for {key}"
        # Compare against the size of the whole gradient: single entries near zero differ
        # relatively by a lot under reordering, which says nothing about correctness.
        scale = torch.maximum(g_t.abs().max(), floor).float()
        err = (g_s.float() - g_t.float()).abs().max() / scale
        assert err <= (0.1 if autocast else 1e-3), (
            f"{name} (batch {batch}, channels_last={channels_last}, autocast={autocast}): "
            f"gradient of {key} differs from torch's by {err:.3g} of its largest entry"
        )


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_scratch_step_equals_torch_step(name, batch, channels_last):
    assert_steps_agree(name, batch, channels_last, autocast=False)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_scratch_step_equals_torch_step_under_bfloat16_autocast(name, channels_last):
    assert_steps_agree(name, 3, channels_last, autocast=True)
