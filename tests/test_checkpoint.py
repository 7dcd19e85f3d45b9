"""Checkpoints: exact resumes (GPULoader, DataLoader, make_dataloader(seed=...); mid-epoch,
at an epoch's end, in a later epoch), atomic writes, one clear error for every unusable
file (truncated, empty, text, foreign, flipped bytes), leftovers of a killed save removed,
no checkpoint of non-finite weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labcode.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from labcode.train import fit
from tiny_training import assert_same_weights, run, tiny_cnn, toy_data

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ exact resumes

@pytest.mark.parametrize("stop_at", [7, 10])   # mid-epoch, and exactly at an epoch's end
def test_resume_after_max_steps_ends_with_the_same_weights(tmp_path, stop_at):
    whole, history = run()
    path = tmp_path / "run.pt"
    stopped, partial = run(checkpoint=path, max_steps=stop_at)
    assert len(partial.step_loss) == stop_at
    resumed, history2 = run(checkpoint=path)
    assert_same_weights(whole, resumed)
    assert history2.step_loss == history.step_loss
    assert history2.train_loss == pytest.approx(history.train_loss, rel=1e-12)
    assert history2.train_acc == history.train_acc


@pytest.mark.parametrize("data", ["gpu", "dataloader"])
def test_resume_after_a_crash_mid_epoch_ends_with_the_same_weights(tmp_path, data):
    whole, history = run(data=data)
    path = tmp_path / "run.pt"
    calls = {"n": 0}

    def crashing_loss(out, y):
        calls["n"] += 1
        if calls["n"] == 8:          # step-checkpoints at 3 and 6; epochs of 5 steps
            raise KeyboardInterrupt("simulated crash")
        return F.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt):
        run(data=data, checkpoint=path, checkpoint_every=3, loss_fn=crashing_loss)
    saved = load_checkpoint(path)
    assert saved["position"]["step"] == 6 and saved["position"]["batch"] == 1
    resumed, history2 = run(data=data, checkpoint=path, checkpoint_every=3)
    assert_same_weights(whole, resumed)
    assert history2.step_loss == history.step_loss


def test_a_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    run(epochs=2, checkpoint=path, max_steps=5)
    before = path.read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run(epochs=2, checkpoint=path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    run(epochs=1, checkpoint=path)
    other = nn.Linear(64, 3)
    with pytest.raises(ValueError, match="does not match"):
        fit(other, [(torch.zeros(2, 64), torch.zeros(2, dtype=torch.long))], epochs=2,
            optimizer=torch.optim.SGD(other.parameters(), lr=0.1), checkpoint=path,
            device="cpu", progress=False)


@pytest.mark.parametrize("data", ["gpu", "dataloader", "seeded"])
@pytest.mark.parametrize("stop_at", [10, 13])   # end of epoch 2, and inside epoch 3
def test_resume_in_a_later_epoch_ends_with_the_same_weights(tmp_path, data, stop_at):
    # A resume in epoch 2 or later must not replay epoch 0's order: the generator a
    # make_dataloader(seed=...) loader shuffles with has to be saved and restored.
    whole, history = run(data=data, epochs=4)
    path = tmp_path / "run.pt"
    run(data=data, epochs=4, checkpoint=path, max_steps=stop_at)
    assert load_checkpoint(path)["position"]["step"] == stop_at
    resumed, history2 = run(data=data, epochs=4, checkpoint=path)
    assert_same_weights(whole, resumed)
    assert history2.step_loss == history.step_loss


def test_a_seeded_dataloader_is_not_resumed_with_an_unseeded_one(tmp_path):
    path = tmp_path / "run.pt"
    run(data="seeded", checkpoint=path, max_steps=7)
    with pytest.raises(CheckpointError, match="same kind of loader") as info:
        run(data="dataloader", checkpoint=path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ unusable files

def saved_run(tmp_path):
    path = tmp_path / "run.pt"
    run(epochs=2, checkpoint=path, max_steps=7)
    return path


def foreign_torch_file(path, data):
    torch.save({"weights": torch.zeros(3), "epoch": 2}, path)


def a_state_dict(path, data):
    torch.save(tiny_cnn().state_dict(), path)


def flip_bytes_in_tensor_data(path, data):
    # Torch stores tensor data uncompressed: find the Linear layer's weights in the file
    # and flip 64 bytes in the middle of them.
    weights = load_checkpoint(path)["model"]["5.weight"].numpy().tobytes()
    start = data.find(weights)
    assert start > 0 and len(weights) > 200
    start += 100
    flipped = bytes(b ^ 0xFF for b in data[start:start + 64])
    path.write_bytes(data[:start] + flipped + data[start + 64:])


DAMAGE = {
    "truncated": lambda path, data: path.write_bytes(data[:len(data) // 2]),
    "cut at the end": lambda path, data: path.write_bytes(data[:-30]),
    "empty": lambda path, data: path.write_bytes(b""),
    "text": lambda path, data: path.write_text("epoch 3, loss 0.25\n"),
    "foreign torch file": foreign_torch_file,
    "a model's state_dict": a_state_dict,
    "flipped bytes": flip_bytes_in_tensor_data,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_an_unusable_checkpoint_gets_one_clear_error(tmp_path, damage):
    path = saved_run(tmp_path)
    DAMAGE[damage](path, path.read_bytes())
    with pytest.raises(CheckpointError) as info:
        run(epochs=2, checkpoint=path)
    message = str(info.value)
    assert str(path) in message
    assert "delete the file or pass another path" in message
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_flipped_bytes_are_reported_as_damage(tmp_path):
    path = saved_run(tmp_path)
    flip_bytes_in_tensor_data(path, path.read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


def test_a_checkpoint_round_trips_and_resume_false_starts_over(tmp_path):
    path = tmp_path / "deep" / "c.pt"
    contents = {"w": torch.arange(6.0).view(2, 3), "n": 3, "xs": [1.5, (2, "a")], "none": None}
    save_checkpoint(path, contents)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], contents["w"]) and loaded["xs"] == [1.5, (2, "a")]
    assert loaded["n"] == 3 and loaded["none"] is None
    path.write_bytes(b"garbage")
    model = tiny_cnn()
    batches = [(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))]
    fit(model, batches, epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        checkpoint=path, resume=False, device="cpu", progress=False)
    assert load_checkpoint(path)["position"]["epoch"] == 1


def test_a_save_removes_the_leftovers_of_a_killed_save(tmp_path):
    path = tmp_path / "run.pt"
    leftovers = [tmp_path / "run.pt.4242.tmp", tmp_path / "run.pt.99999999.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half a checkpoint")
    unrelated = [tmp_path / "other.pt.4242.tmp", tmp_path / "run.pt.bak",
                 tmp_path / "run.pt.notes.tmp"]
    for name in unrelated:
        name.write_bytes(b"keep me")
    run(epochs=1, checkpoint=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["run.pt"] + [p.name for p in unrelated])


# ------------------------------------------------------------------ non-finite weights

def test_no_checkpoint_holds_non_finite_weights(tmp_path):
    # A gradient that is NaN while the loss is finite makes the weights NaN after step 3;
    # the save right after that step is refused and the one from step 2 is kept.
    images, labels = toy_data()
    batches = [(images[i:i + 8].float() / 255, labels[i:i + 8]) for i in range(0, 48, 8)]
    path = tmp_path / "run.pt"
    model = tiny_cnn()
    calls = {"n": 0}
    kept = {}

    def loss_fn(out, y):
        calls["n"] += 1
        loss = F.cross_entropy(out, y)
        if calls["n"] == 3:
            kept["bytes"] = path.read_bytes()
            loss.register_hook(lambda grad: grad * float("nan"))
        return loss

    with pytest.raises(CheckpointError, match="NaN or infinite") as info:
        fit(model, batches, epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_fn=loss_fn, checkpoint=path, checkpoint_every=1, device="cpu",
            progress=False)
    assert str(path) in str(info.value)
    assert path.read_bytes() == kept["bytes"]
    assert load_checkpoint(path)["position"]["step"] == 2
