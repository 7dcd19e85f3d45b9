"""labcode.experiments: validation split, seeds, paired differences, learning-rate pick."""
import math

import numpy as np
import pytest
import torch

from labcode.data import ImageSet, load_digits
from labcode.experiments import (
    over_seeds, paired, pick_learning_rate, steps_to, t95, validation_split,
)


def tiny_set(per_class=8, classes=3):
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    return ImageSet(images.clone(), labels, tuple(str(c) for c in range(classes)))


def test_validation_split_is_stratified_disjoint_and_complete():
    data = tiny_set(per_class=8, classes=3)
    train, val = validation_split(data, 0.25, seed=3)
    assert len(train) == 18 and len(val) == 6
    assert val.labels.bincount().tolist() == [2, 2, 2]
    ids_train = set(train.images[:, 0, 0, 0].tolist())
    ids_val = set(val.images[:, 0, 0, 0].tolist())
    assert not ids_train & ids_val
    assert ids_train | ids_val == set(range(24))
    # every image keeps its own label
    assert torch.equal(val.labels, data.labels[val.images[:, 0, 0, 0].long()])
    assert val.classes == data.classes


def test_validation_split_depends_on_seed_only():
    data = tiny_set()
    a = validation_split(data, 0.25, seed=0)[1].images
    b = validation_split(data, 0.25, seed=0)[1].images
    c = validation_split(data, 0.25, seed=1)[1].images
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_validation_split_of_the_digits_keeps_the_test_set_apart():
    train, val = validation_split(load_digits("train"))
    assert (len(train), len(val)) == (3500, 500)
    assert val.labels.bincount().tolist() == [50] * 10
    test = load_digits("test").images.flatten(1)
    # no validation image is a test image (the split is carved from training digits)
    assert not (val.images.flatten(1)[:, None, :] == test[None, :50]).all(-1).any()


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.1"])
def test_validation_split_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="fraction must be a number in \\(0, 1\\)"):
        validation_split(tiny_set(), fraction)


def test_validation_split_rejects_a_class_left_empty():
    with pytest.raises(ValueError, match="class 0 has 8 images"):
        validation_split(tiny_set(per_class=8), 0.01)
    with pytest.raises(TypeError, match="expected an ImageSet, got tuple"):
        validation_split((torch.zeros(2, 1, 2, 2), torch.zeros(2)), 0.5)


def test_t95_matches_the_table_and_the_normal_limit():
    assert t95(1) == pytest.approx(12.706)
    assert t95(4) == pytest.approx(2.776)
    assert t95(1000) == pytest.approx(1.96, abs=0.01)
    with pytest.raises(ValueError, match="int >= 1, got 0"):
        t95(0)


def test_paired_statistics_by_hand():
    p = paired([90.0, 92.0, 91.0, 93.0], [89.0, 90.0, 90.0, 90.0])
    d = np.array([1.0, 2.0, 1.0, 3.0])
    assert p.n == 4 and p.wins == 4
    assert p.mean == pytest.approx(d.mean())
    assert p.std == pytest.approx(d.std(ddof=1))
    assert p.half_width == pytest.approx(3.182 * d.std(ddof=1) / 2)


def test_pairing_sees_what_two_means_hide():
    # the seeds differ a lot between themselves, but a leads b on every one by about 0.5
    base = np.array([80.0, 90.0, 85.0, 95.0, 88.0])
    p = paired(base + np.array([0.5, 0.4, 0.6, 0.5, 0.45]), base)
    unpaired_spread = max(p.a.std(ddof=1), p.b.std(ddof=1))
    assert abs(p.a.mean() - p.b.mean()) < unpaired_spread      # unpaired: lost in the noise
    assert p.clear()                                           # paired: clear
    assert p.verdict("max", "avg").startswith("a clear lead for max over avg")


def test_verdict_follows_the_sign_and_the_noise():
    assert paired([1, 2, 3], [2, 3, 4.1]).verdict("A", "B").startswith("a clear lead for B over A")
    noisy = paired([1.0, 3.0, 2.0, 0.0], [2.0, 1.0, 2.5, 0.2])
    assert not noisy.clear()
    assert noisy.verdict("A", "B").startswith("no clear difference between A and B")
    few = paired([5.0, 6.0], [1.0, 1.0])
    assert not few.clear() and few.verdict("A", "B") == "2 seeds cannot decide between A and B"
    one = paired([1.0], [0.0])
    assert math.isnan(one.std) and "1 seed cannot" in one.verdict("A", "B")


@pytest.mark.parametrize("a, b, message", [
    ([1, 2], [1], "equally long"),
    ([], [], "non-empty"),
    ([[1, 2]], [[1, 2]], "got shapes \\(1, 2\\)"),
    ([1, float("nan")], [1, 2], "finite"),
])
def test_paired_rejects_bad_scores(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired(a, b)


def test_over_seeds_runs_each_seed_once_in_order():
    assert over_seeds(lambda s: s * 10, range(3)) == [0, 10, 20]
    with pytest.raises(ValueError, match="one or more int seeds, got \\[\\]"):
        over_seeds(lambda s: s, [])
    with pytest.raises(ValueError, match="int seeds"):
        over_seeds(lambda s: s, [0.5])


def test_pick_learning_rate_keeps_the_best_validation_score():
    tried = []

    def score(lr):
        tried.append(lr)
        return {0.01: 0.90, 0.03: 0.95, 0.1: float("nan")}[lr]

    best, scores = pick_learning_rate(score, [0.01, 0.03, 0.1])
    assert best == 0.03 and tried == [0.01, 0.03, 0.1]
    assert scores[0.1] == -math.inf         # a diverged run never wins
    assert pick_learning_rate(lambda lr: 1.0, [0.2, 0.1])[0] == 0.2   # ties: the first
    with pytest.raises(ValueError, match="positive learning rates, got \\[0.1, -1\\]"):
        pick_learning_rate(score, [0.1, -1])


def test_steps_to_interpolates_and_says_never():
    steps, errors = [10, 20, 30, 40], [0.9, 0.5, 0.3, 0.1]
    assert steps_to(steps, errors, 0.4) == pytest.approx(25.0)
    assert steps_to(steps, errors, 0.3) == pytest.approx(30.0)
    assert steps_to(steps, errors, 0.95) == 10.0
    assert math.isnan(steps_to(steps, errors, 0.05))
    # the first crossing counts, not a later one after the curve went back up
    assert steps_to([1, 2, 3, 4], [0.5, 0.2, 0.6, 0.1], 0.3) == pytest.approx(1 + 2 / 3)
    with pytest.raises(ValueError, match="steps must increase"):
        steps_to([1, 1, 2], [0.3, 0.2, 0.1], 0.2)
    with pytest.raises(ValueError, match="equally long"):
        steps_to([1, 2], [0.3], 0.2)


def tiny_problem(n=96, seed=0):
    from labcode.data import GPULoader
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = (images[:, 0, :, :2].float().mean((1, 2)) > images[:, 0, :, 2:].float().mean((1, 2))).long()
    train = GPULoader(images, labels, batch_size=16, seed=seed, device="cpu")
    probe = GPULoader(images, labels, batch_size=n, shuffle=False, device="cpu",
                      mean=train.mean, std=train.std)
    return train, probe


def test_error_curve_measures_every_few_steps_and_stops_early():
    from labcode.experiments import error_curve
    torch.manual_seed(0)
    train, probe = tiny_problem()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    steps, errors = error_curve(model, train, probe, optimizer=opt, steps=25, every=10)
    assert steps.tolist() == [10, 20, 25]
    assert errors[-1] < 0.3 and ((0 <= errors) & (errors <= 1)).all()
    # the last measurement is the model's error on the probe now
    from labcode.train import evaluate
    assert errors[-1] == pytest.approx(1 - evaluate(model, probe)[1])
    steps2, errors2 = error_curve(model, train, probe, optimizer=opt, steps=100, every=5,
                                  stop_below=1.0)
    assert steps2.tolist() == [5]
    with pytest.raises(ValueError, match="every must be a positive int, got 0"):
        error_curve(model, train, probe, optimizer=opt, steps=10, every=0)


def test_fit_best_keeps_the_best_epoch_and_stops_after_patience():
    from labcode.experiments import fit_best
    from labcode.train import evaluate
    torch.manual_seed(0)
    train, probe = tiny_problem()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    # a learning rate so large that the validation accuracy jumps around
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    result = fit_best(model, train, probe, optimizer=opt, max_epochs=12, patience=3)
    vals, best = result["val_acc"], result["best_epoch"]
    assert vals[best - 1] == max(vals) == result["best_val_acc"]
    assert vals.index(max(vals)) + 1 == best            # the first best epoch is kept
    assert len(vals) == 12 or len(vals) - best == 3     # stopped after 3 epochs without gain
    assert len(result["train_acc"]) == len(vals)
    assert evaluate(model, probe)[1] == pytest.approx(result["best_val_acc"])   # weights restored
    with pytest.raises(ValueError, match="patience must be a positive int, got 0"):
        fit_best(model, train, probe, optimizer=opt, max_epochs=3, patience=0)
