"""fit, evaluate, predict: against hand-written loops, exact repeats with a seed, the
non-finite-loss stop, fit's length. Checkpoints and resuming: test_checkpoint.py."""
from __future__ import annotations

import inspect
import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labcode.checkpoint import load_checkpoint
from labcode.data import GPULoader
from labcode.train import History, NonFiniteLossError, evaluate, fit, predict, topk_accuracy
from tiny_training import assert_same_weights, params, run, tiny_cnn, toy_data

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent


def test_fit_equals_a_hand_written_loop():
    images, labels = toy_data()
    x_all = images.float() / 255
    batches = [(x_all[i:i + 16], labels[i:i + 16]) for i in range(0, 48, 16)]
    torch.manual_seed(0)
    model = tiny_cnn()
    reference = tiny_cnn()
    reference.load_state_dict(model.state_dict())
    history = fit(model, batches, epochs=2, device="cpu", progress=False,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(2):
        for x, y in batches:
            loss = F.cross_entropy(reference(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert_same_weights(model, reference)
    assert history.step_loss == pytest.approx(losses, rel=1e-6)
    assert history.epochs == 2 and len(history.train_acc) == 2


def test_a_seed_repeats_a_cpu_run_exactly():
    a, ha = run(seed=1)
    b, hb = run(seed=1)
    c, _ = run(seed=2)
    assert_same_weights(a, b)
    assert ha.step_loss == hb.step_loss
    assert not all(torch.equal(x, y) for x, y in zip(params(a), params(c)))


def test_a_nan_loss_stops_with_the_step_named():
    images, labels = toy_data()
    batches = [(images[i:i + 8].float() / 255, labels[i:i + 8]) for i in range(0, 48, 8)]
    calls = {"n": 0}

    def loss_fn(out, y):
        calls["n"] += 1
        loss = F.cross_entropy(out, y)
        return loss * math.nan if calls["n"] == 4 else loss

    model = tiny_cnn()
    with pytest.raises(NonFiniteLossError, match="at step 4") as info:
        fit(model, batches, epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_fn=loss_fn, device="cpu", progress=False)
    assert "lower learning rate" in str(info.value) and "normalised" in str(info.value)


def deep_linear() -> nn.Module:
    # Three linear layers and no activation: with lr=1e6 the weights grow so fast that
    # the loss of step 3 is NaN while the weights it was computed from are finite.
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Linear(16, 16), nn.Linear(16, 3))


def diverge(optimizer_kwargs=None, device="cpu"):
    """Train deep_linear with lr=1e6 until the loss is NaN; the error, the model, and
    the weights each step's loss was computed from."""
    images, labels = toy_data()
    batches = [(images[i:i + 8].float() / 255, labels[i:i + 8]) for i in range(0, 48, 8)]
    model = deep_linear()
    seen = []

    def loss_fn(out, y):
        seen.append(params(model))
        return F.cross_entropy(out, y)

    optimizer = torch.optim.SGD(model.parameters(), lr=1e6, **(optimizer_kwargs or {}))
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, batches, epochs=5, optimizer=optimizer, loss_fn=loss_fn, device=device,
            progress=False)
    return info.value, model, seen


def test_a_nan_loss_stops_training_before_the_optimizer_applies_it():
    error, model, seen = diverge()
    assert "at step 3" in str(error)
    assert len(seen) == 3                                # no step ran after the bad one
    assert all(torch.isfinite(p).all() for p in seen[2])
    for now, before in zip(params(model), seen[2]):      # the bad update was not applied
        assert torch.equal(now, before)


def test_the_device_side_skip_keeps_the_weights_of_the_last_good_step(monkeypatch):
    # What fit does on CUDA with a fused optimizer, run here on the CPU: the update is
    # skipped on the device from the first NaN on, and the error comes at the next
    # read-back (the epoch's end), naming the first bad step.
    import labcode.train as train_module
    monkeypatch.setattr(train_module, "_skips_on_device", lambda *args: True)
    error, model, seen = diverge(dict(fused=True))
    assert "at step 3" in str(error) and "epoch 1" in str(error)
    assert len(seen) == 6                                # ran on to the read-back
    assert all(torch.isfinite(p).all() for p in seen[2])
    for now, before in zip(params(model), seen[2]):
        assert torch.equal(now, before)


@pytest.mark.gpu
def test_on_cuda_a_fused_optimizer_skips_the_bad_update_without_waiting():
    error, model, seen = diverge(dict(fused=True), device="cuda")
    step = int(re.search(r"at step (\d+)", str(error)).group(1))
    assert all(torch.isfinite(p).all() for p in seen[step - 1])
    for now, before in zip(params(model), seen[step - 1]):
        assert torch.equal(now, before)


def test_on_cuda_fit_says_how_to_avoid_waiting_for_every_loss():
    """A non-fused Adam, AdamW or SGD makes fit read every loss back on a GPU: it says so
    and names the fix. Other optimisers have no fused form, and nothing waits on a CPU."""
    from labcode.train import _FiniteGuard
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    params = tiny_cnn().parameters
    with pytest.warns(UserWarning, match=r"torch\.optim\.AdamW\(\.\.\., fused=True\)"):
        _FiniteGuard(torch.device("cuda"), torch.optim.AdamW(params()), scaler, mixed=False)
    quiet = [(torch.device("cuda"), torch.optim.RMSprop(params())),
             (torch.device("cpu"), torch.optim.AdamW(params()))]
    for device, optimizer in quiet:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _FiniteGuard(device, optimizer, scaler, mixed=False)


def test_every_optimizer_the_chapters_build_is_fused():
    """So that fit never makes the GPU wait for each step's loss (see the test above)."""
    built = 0
    for path in sorted((ROOT / "chapters").rglob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            for call in re.finditer(r"torch\.optim\.(?:Adam|AdamW|SGD)\((?:[^()]|\([^()]*\))*\)", source):
                built += 1
                assert "fused=True" in call.group(0), f"{path.name}: {call.group(0)}"
    assert built >= 8, f"found {built} optimisers in the chapters; the pattern no longer matches"


@pytest.mark.gpu
def test_on_cuda_fit_with_a_fused_optimizer_waits_only_to_read_losses_back():
    """Count synchronising CUDA calls: a fused optimizer's run waits a few times per
    SYNC_EVERY steps, a non-fused one at least once per step."""
    from labcode.train import SYNC_EVERY
    images, labels = toy_data(1024)
    syncs = {}
    for fused in (True, False):
        train = GPULoader(images, labels, 8, device="cuda", seed=0)
        model = tiny_cnn()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, fused=fused)
        fit(model, train, epochs=1, optimizer=optimizer, progress=False)  # warm-up
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fit(model, train, epochs=1, optimizer=optimizer, progress=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs[fused] = sum("synchroniz" in str(w.message) for w in caught)
    steps = len(train)
    assert syncs[False] >= steps, syncs
    assert syncs[True] <= 4 * (steps // SYNC_EVERY + 1) + 10, syncs


def test_fit_stays_short_enough_to_read():
    lines, _ = inspect.getsourcelines(fit)
    assert len(lines) <= 60, f"fit is {len(lines)} lines; move work into its helpers"


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(model="net"), TypeError, "torch.nn.Module"),
    (dict(optimizer="sgd"), TypeError, "torch.optim.Optimizer"),
    (dict(epochs=0), ValueError, "epochs must be a positive int"),
    (dict(max_steps=-1), ValueError, "max_steps must be a positive int"),
    (dict(scheduler_step="batch"), ValueError, "'step' or 'epoch'"),
])
def test_fit_rejects_bad_arguments(kwargs, error, words):
    model = tiny_cnn()
    args = dict(model=model, train_data=[], epochs=1,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.1), device="cpu")
    args.update(kwargs)
    with pytest.raises(error) as info:
        fit(args.pop("model"), args.pop("train_data"), **args)
    assert words in str(info.value)


def test_evaluate_predict_and_topk_against_direct_computation():
    images, labels = toy_data(30)
    x = images.float() / 255
    torch.manual_seed(3)
    model = tiny_cnn(dropout=0.5)
    batches = [(x[i:i + 7], labels[i:i + 7]) for i in range(0, 30, 7)]
    loss, acc = evaluate(model, batches)
    assert model.training                      # mode restored
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    preds, true = predict(model, batches)
    assert torch.equal(preds, logits.argmax(1)) and torch.equal(true, labels)
    top1, top2 = topk_accuracy(logits, labels, k=(1, 2))
    ranks = (logits > logits.gather(1, labels[:, None])).sum(1)
    assert top1 == pytest.approx((ranks < 1).float().mean().item())
    assert top2 == pytest.approx((ranks < 2).float().mean().item())
    with pytest.raises(ValueError, match="k must lie in 1..3"):
        topk_accuracy(logits, labels, k=5)


def test_fit_with_validation_and_history_round_trip():
    images, labels = toy_data()
    train = GPULoader(images, labels, 16, device="cpu", seed=0)
    val = GPULoader(images, labels, 48, shuffle=False, mean=train.mean, std=train.std,
                    device="cpu")
    model = tiny_cnn()
    history = fit(model, train, epochs=2, val_data=val, device="cpu", progress=False,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert len(history.val_loss) == 2
    assert history.val_loss[-1] == pytest.approx(evaluate(model, val)[0], rel=1e-6)
    again = History.from_dict(history.to_dict())
    assert again == history
    import matplotlib.figure
    assert isinstance(history.plot(), matplotlib.figure.Figure)


@pytest.mark.gpu
def test_fit_on_cuda_with_mixed_precision_and_channels_last(tmp_path):
    images, labels = toy_data(256)
    train = GPULoader(images, labels, 32, augment="crop_flip", pad=1, device="cuda", seed=0)
    model = tiny_cnn()
    history = fit(model, train, epochs=2, progress=False, checkpoint=tmp_path / "c.pt",
                  optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2))
    assert next(model.parameters()).is_cuda
    assert all(math.isfinite(v) for v in history.step_loss)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
def test_float16_with_gradient_scaler_trains_and_resumes(tmp_path, monkeypatch):
    # Colab's T4 has no bfloat16: float16 autocast with a GradScaler. Force that path.
    import labcode.train as train_module
    from labcode.device import Precision
    monkeypatch.setattr(train_module, "precision",
                        lambda device, mixed=True: Precision(torch.device(device),
                                                             torch.float16 if mixed else None))
    images, labels = toy_data(256)
    path = tmp_path / "fp16.pt"
    for max_steps in (5, None):
        train = GPULoader(images, labels, 32, device="cuda", seed=0)
        model = tiny_cnn()
        history = fit(model, train, epochs=2, progress=False, checkpoint=path,
                      max_steps=max_steps,
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.05))
    saved = load_checkpoint(path)
    assert saved["scaler"]["scale"] > 0 and saved["position"]["step"] == 16
    assert all(math.isfinite(v) for v in history.step_loss) and len(history.step_loss) == 16


# ------------------------------------------------------------------ labcode.viz

def test_confusion_matrix_counts_match_a_loop():
    from labcode.viz import confusion_matrix
    g = torch.Generator().manual_seed(0)
    labels, preds = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (50,), generator=g)
    expected = torch.zeros(4, 4, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist()):
        expected[t, p] += 1
    assert torch.equal(confusion_matrix(labels, preds, 4), expected)


def test_viz_functions_return_figures_and_check_input():
    import matplotlib.figure
    from labcode import viz
    g = torch.Generator().manual_seed(0)
    images = torch.rand(10, 1, 8, 8, generator=g)
    labels = torch.arange(10) % 3
    preds = torch.tensor([0, 1, 2, 1, 1, 2, 0, 0, 2, 0])
    figures = [
        viz.plot_confusion(labels, preds, ["a", "b", "c"], normalize=True),
        viz.show_misclassified(images, labels, preds, n=4),
        viz.show_images(images, titles=list("abcdefghij"), ncols=5),
        viz.show_kernels(torch.randn(6, 3, 5, 5, generator=g)),
        viz.show_feature_maps(torch.randn(1, 12, 6, 6, generator=g), n=8),
        viz.plot_history({"train_loss": [1.0, 0.5], "train_acc": [0.5, 0.8]}),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    wrong = int((labels != preds).sum())
    assert len([a for a in figures[1].axes if a.images]) == min(4, wrong)
    assert len([a for a in figures[2].axes if a.images]) == 10
    with pytest.raises(ValueError, match=r"\(out, in, kH, kW\), got shape \(6, 5, 5\)"):
        viz.show_kernels(torch.zeros(6, 5, 5))
    with pytest.raises(ValueError, match="differ in length"):
        viz.plot_confusion(labels, preds[:5])
    with pytest.raises(ValueError, match="one sample"):
        viz.show_feature_maps(torch.zeros(2, 3, 4, 4))
    import matplotlib.pyplot as plt
    plt.close("all")
