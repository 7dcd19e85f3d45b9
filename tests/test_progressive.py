"""Progressive learning (labcode.progressive, EfficientNetV2's Algorithm 1): the
interpolation rule, the split of epochs into stages, what fit applies each epoch, an
exact resume in the middle of a schedule, GPULoader's image_size, and the input checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from labcode.data import GPULoader
from labcode.progressive import ProgressiveSchedule
from labcode.train import fit, seed_everything
from tiny_training import assert_same_weights, tiny_cnn, toy_data

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ the rule

@settings(max_examples=60, deadline=None)
@given(stages=st.integers(1, 6), s0=st.integers(4, 64), se=st.integers(4, 64),
       d0=st.floats(0, 0.9), de=st.floats(0, 0.9), p0=st.integers(0, 5), pe=st.integers(0, 5),
       extra=st.integers(0, 7))
def test_each_stage_interpolates_linearly_from_initial_to_final(stages, s0, se, d0, de,
                                                                p0, pe, extra):
    schedule = ProgressiveSchedule(stages, (s0, se), dropout=(d0, de), pad=(p0, pe))
    epochs = stages + extra
    for i, stage in enumerate(schedule.stages_for(epochs)):
        # Algorithm 1, written out again: S_i = S_0 + (S_e - S_0) * i / (M - 1).
        t = 1.0 if stages == 1 else i / (stages - 1)
        assert stage.index == i
        assert stage.image_size == round(s0 + (se - s0) * t)
        assert stage.dropout == pytest.approx(d0 + (de - d0) * t)
        assert stage.pad == round(p0 + (pe - p0) * t)
    last = schedule.stage(stages - 1, epochs)
    assert (last.image_size, last.pad) == (se, pe) and last.dropout == pytest.approx(de)
    if stages > 1:
        first = schedule.stage(0, epochs)
        assert (first.image_size, first.pad) == (s0, p0) and first.dropout == pytest.approx(d0)


@settings(max_examples=60, deadline=None)
@given(stages=st.integers(1, 6), extra=st.integers(0, 20))
def test_stages_split_the_epochs_into_nearly_equal_consecutive_runs(stages, extra):
    schedule = ProgressiveSchedule(stages, (8, 16))
    epochs = stages + extra
    owners = [schedule.stage_of(e, epochs) for e in range(epochs)]
    assert owners == sorted(owners) and set(owners) == set(range(stages))
    covered = []
    for stage in schedule.stages_for(epochs):
        assert all(owners[e] == stage.index for e in stage.epochs)
        assert len(stage.epochs) in (epochs // stages, -(-epochs // stages))
        covered.extend(stage.epochs)
    assert covered == list(range(epochs))


def test_the_paper_example_shape_three_stages():
    schedule = ProgressiveSchedule(3, (16, 28), dropout=(0.1, 0.2), pad=(0, 2))
    sizes = [s.image_size for s in schedule.stages_for(6)]
    assert sizes == [16, 22, 28]
    assert [list(s.epochs) for s in schedule.stages_for(6)] == [[0, 1], [2, 3], [4, 5]]
    assert "stage 2: epochs 3-4, images 22x22, dropout 0.15, shift up to 1 px" \
        in schedule.table(6)


# ------------------------------------------------------------------ applied by fit

class Recorder(nn.Module):
    """A small CNN for any image size that notes, per forward pass in training mode, the
    image side and the dropout probability it ran with."""

    def __init__(self, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16, 3)
        self.seen: list[tuple[int, float]] = []

    def forward(self, x):
        if self.training:
            self.seen.append((x.shape[-1], self.drop.p))
        return self.head(self.drop(self.features(x)))


def loader(**kwargs):
    images, labels = toy_data(40)
    return GPULoader(images, labels, 10, device="cpu", seed=0, **kwargs)


def test_fit_sets_image_size_dropout_and_pad_per_epoch():
    schedule = ProgressiveSchedule(3, (4, 8), dropout=(0.0, 0.4), pad=(0, 2))
    train = loader(augment="crop")
    model = Recorder()
    fit(model, train, epochs=5, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        device="cpu", progress=False, progressive=schedule)
    per_epoch = [model.seen[i * len(train)] for i in range(5)]
    expected = [(4, 0.0), (4, 0.0), (6, 0.2), (6, 0.2), (8, 0.4)]  # stage floor(3e/5)
    assert [size for size, _ in per_epoch] == [size for size, _ in expected]
    assert [p for _, p in per_epoch] == pytest.approx([p for _, p in expected])
    assert len(model.seen) == 5 * len(train)
    assert train.pad == 2 and train.image_size == 8


def test_fit_with_a_schedule_equals_fitting_stage_by_stage_by_hand():
    schedule = ProgressiveSchedule(2, (4, 8), dropout=(0.0, 0.3))

    def start():
        seed_everything(0)
        model = tiny_cnn_any_size()
        return model, loader(augment="flip"), torch.optim.Adam(model.parameters(), lr=1e-2)

    model, train, optimizer = start()
    fit(model, train, epochs=4, optimizer=optimizer, device="cpu", seed=0, progress=False,
        progressive=schedule)
    by_hand, train2, optimizer2 = start()
    seed_everything(0)
    train2.manual_seed(0)
    for size, p in ((4, 0.0), (4, 0.0), (8, 0.3), (8, 0.3)):
        train2.image_size = size
        by_hand[4].p = p
        for x, y in train2:
            loss = F.cross_entropy(by_hand(x), y)
            optimizer2.zero_grad()
            loss.backward()
            optimizer2.step()
    assert_same_weights(model, by_hand)


def tiny_cnn_any_size() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Dropout(0.0), nn.Linear(16, 3))


def test_a_resumed_progressive_run_ends_with_the_same_weights(tmp_path):
    def run(checkpoint=None, max_steps=None):
        seed_everything(1)
        model = tiny_cnn_any_size()
        train = loader(augment="crop_flip", pad=1)
        schedule = ProgressiveSchedule(3, (4, 8), dropout=(0.1, 0.3), pad=(0, 2))
        fit(model, train, epochs=3, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            device="cpu", seed=1, progress=False, progressive=schedule,
            checkpoint=checkpoint, max_steps=max_steps)
        return model

    whole = run()
    path = tmp_path / "progressive.pt"
    run(checkpoint=path, max_steps=6)          # stops inside the second stage
    resumed = run(checkpoint=path)
    assert_same_weights(whole, resumed)


# ------------------------------------------------------------------ the loader

def test_loader_image_size_resizes_each_augmented_batch():
    plain, resized = loader(augment="crop_flip", pad=1), loader(augment="crop_flip", pad=1)
    resized.image_size = 5
    for (x, y), (r, ry) in zip(plain, resized):
        assert r.shape == (len(x), 1, 5, 5)
        assert torch.equal(y, ry)
        expected = F.interpolate(x, size=(5, 5), mode="bilinear", antialias=True,
                                 align_corners=False)
        torch.testing.assert_close(r, expected)
    resized.image_size = None
    assert next(iter(resized))[0].shape[-1] == 8


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "28"])
def test_loader_rejects_a_bad_image_size(value):
    with pytest.raises(ValueError, match="image_size must be a positive int or None"):
        loader(image_size=value)


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kwargs, words", [
    (dict(stages=0, image_size=(8, 16)), "stages must be an int >= 1"),
    (dict(stages=2.0, image_size=(8, 16)), "stages must be an int >= 1"),
    (dict(stages=2, image_size=(0, 16)), "image_size must be an (initial, final) pair"),
    (dict(stages=2, image_size=16), "image_size must be an (initial, final) pair"),
    (dict(stages=2, image_size=(8, 16.5)), "image_size must be an (initial, final) pair"),
    (dict(stages=2, image_size=(8, 16), dropout=(0.1, 1.0)), "dropout must be"),
    (dict(stages=2, image_size=(8, 16), pad=(-1, 2)), "pad must be"),
])
def test_schedule_rejects_bad_settings(kwargs, words):
    with pytest.raises(ValueError) as info:
        ProgressiveSchedule(**kwargs)
    assert words in str(info.value)


def test_schedule_rejects_stage_and_epoch_out_of_range():
    schedule = ProgressiveSchedule(3, (8, 16))
    with pytest.raises(ValueError, match="3 stages need at least 3 epochs"):
        schedule.stage_of(0, 2)
    with pytest.raises(ValueError, match=r"epoch must be an int in 0\.\.5"):
        schedule.stage_of(6, 6)
    with pytest.raises(ValueError, match=r"stage must be an int in 0\.\.2"):
        schedule.stage(3, 6)


def fit_args(model, epochs=3):
    return dict(epochs=epochs, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                device="cpu", progress=False)


def test_fit_rejects_a_schedule_it_cannot_apply():
    model = Recorder()
    schedule = ProgressiveSchedule(3, (4, 8), dropout=(0.0, 0.2), pad=(0, 2))
    with pytest.raises(TypeError, match="ProgressiveSchedule or None, got str"):
        fit(model, loader(augment="crop"), progressive="16->28", **fit_args(model))
    with pytest.raises(ValueError, match="3 stages need at least 3 epochs"):
        fit(model, loader(augment="crop"), progressive=schedule,
            **fit_args(model, epochs=2))
    images, labels = toy_data(40)
    batches = [(images[:10].float(), labels[:10])]
    with pytest.raises(TypeError, match="must be a labcode.data.GPULoader, got list"):
        fit(model, batches, progressive=schedule, **fit_args(model))
    with pytest.raises(ValueError, match="needs augment 'crop' or 'crop_flip', got 'flip'"):
        fit(model, loader(augment="flip"), progressive=schedule, **fit_args(model))
    with pytest.raises(ValueError, match="reflect padding needs pad < 8"):
        fit(model, loader(augment="crop"), **fit_args(model),
            progressive=ProgressiveSchedule(2, (4, 8), pad=(0, 8)))
    no_dropout = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(2, 3))
    with pytest.raises(ValueError, match="Sequential has no nn.Dropout module"):
        fit(no_dropout, loader(augment="crop"), progressive=schedule,
            **fit_args(no_dropout))
    assert model.seen == []                      # nothing trained before the checks
