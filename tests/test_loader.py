"""GPULoader and make_dataloader: batch augmentation against a per-sample reference,
coverage of every sample, seeding, sharding, resuming, input checks."""
from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from labcode.data import GPULoader, crop_flip, default_num_workers, make_dataloader

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_crop_flip(x, dy, dx, flip, pad, mode):
    """One image at a time with torch's own padding: the slow, obvious way."""
    torch_mode = "reflect" if mode == "reflect" else "constant"
    out = []
    for i in range(len(x)):
        img = x[i:i + 1].double()
        padded = F.pad(img, (pad, pad, pad, pad), mode=torch_mode)
        h, w = x.shape[-2:]
        crop = padded[..., int(dy[i]):int(dy[i]) + h, int(dx[i]):int(dx[i]) + w]
        if flip[i]:
            crop = crop.flip(-1)
        out.append(crop)
    return torch.cat(out).to(x.dtype)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 5), channels=st.integers(1, 3), height=st.integers(3, 9),
       width=st.integers(3, 9), pad=st.integers(0, 2),
       mode=st.sampled_from(["reflect", "zeros"]), seed=st.integers(0, 10_000))
def test_crop_flip_matches_per_sample_reference(batch, channels, height, width, pad, mode, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, channels, height, width), generator=g, dtype=torch.uint8)
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=g)
    flip = torch.rand(batch, generator=g) < 0.5
    got = crop_flip(x, dy, dx, flip, pad=pad, padding_mode=mode)
    assert got.dtype == torch.uint8
    assert torch.equal(got, reference_crop_flip(x, dy, dx, flip, pad, mode))


def test_crop_flip_rejects_a_wrong_reference():
    # The reference above must be able to tell a mistake: a flip applied before the
    # crop differs from one applied after it whenever the offset is not centred.
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    dy, dx, flip = torch.tensor([0, 2]), torch.tensor([0, 1]), torch.tensor([True, True])
    wrong = crop_flip(x.flip(-1), dy, dx, torch.tensor([False, False]), pad=1)
    assert not torch.equal(wrong, reference_crop_flip(x, dy, dx, flip, 1, "reflect"))


def indexed_images(n, channels=1, size=6):
    # Image i is filled with i % 251 and labelled i, so a batch tells which images it holds.
    images = (torch.arange(n) % 251).to(torch.uint8).view(n, 1, 1, 1)
    return images.expand(n, channels, size, size).contiguous(), torch.arange(n)


def test_one_epoch_yields_every_sample_once_with_its_label():
    images, labels = indexed_images(103)
    loader = GPULoader(images, labels, batch_size=10, mean=0.0, std=1.0, seed=1, device="cpu")
    assert len(loader) == 11
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal((x * 255).round(), images[y].float())  # image belongs to its label
        seen.append(y)
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == list(range(103))
    assert not torch.equal(seen, torch.arange(103))       # shuffled


def test_drop_last_and_no_shuffle():
    images, labels = indexed_images(25)
    loader = GPULoader(images, labels, batch_size=10, shuffle=False, drop_last=True,
                       device="cpu")
    ys = [y for _, y in loader]
    assert len(loader) == len(ys) == 2
    assert torch.equal(torch.cat(ys), torch.arange(20))


def test_normalisation_uses_given_or_computed_statistics():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 5, 5), generator=g, dtype=torch.uint8)
    labels = torch.zeros(40, dtype=torch.long)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    loader = GPULoader(images, labels, 40, shuffle=False, mean=mean, std=std, device="cpu")
    x, _ = next(iter(loader))
    expected = (images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1).double()) \
        / torch.tensor(std).view(1, 3, 1, 1).double()
    torch.testing.assert_close(x.double(), expected, atol=1e-5, rtol=1e-5)
    auto = GPULoader(images, labels, 40, shuffle=False, device="cpu")
    x, _ = next(iter(auto))
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_same_seed_same_batches_and_different_seed_differs():
    images, labels = indexed_images(64, channels=3, size=8)
    make = lambda seed: GPULoader(images, labels, 16, augment="crop_flip", pad=2, seed=seed,
                                  device="cpu")
    a, b, c = batches(make(5)), batches(make(5)), batches(make(6))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, c))


def test_two_shards_together_equal_one_loader_with_the_global_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (50,), generator=g)
    common = dict(augment="crop_flip", pad=2, seed=3, mean=0.5, std=0.25, device="cpu")
    whole = batches(GPULoader(images, labels, 8, rank=0, world_size=1, **common))
    shard0 = batches(GPULoader(images, labels, 4, rank=0, world_size=2, **common))
    shard1 = batches(GPULoader(images, labels, 4, rank=1, world_size=2, **common))
    assert len(whole) == len(shard0) == len(shard1) == 7
    for (x, y), (x0, y0), (x1, y1) in zip(whole, shard0, shard1):
        assert torch.equal(torch.cat([x0, x1]), x)
        assert torch.equal(torch.cat([y0, y1]), y)


def test_state_dict_resumes_mid_epoch_exactly():
    images, labels = indexed_images(60, channels=3, size=8)
    make = lambda: GPULoader(images, labels, 8, augment="crop_flip", pad=2, seed=9,
                             device="cpu")
    reference = make()
    expected = batches(reference) + batches(reference)   # two epochs
    first = make()
    it = iter(first)
    got = [tuple(t.clone() for t in next(it)) for _ in range(3)]
    state = first.state_dict()
    second = make()
    second.manual_seed(12345)                              # must be overridden
    second.load_state_dict(state)
    got += batches(second) + batches(second)
    assert len(got) == len(expected)
    for (x1, y1), (x2, y2) in zip(got, expected):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_imageset_is_accepted():
    from labcode.data import load_digits
    digits = load_digits("test")
    loader = GPULoader(digits, batch_size=100, shuffle=False, device="cpu")
    x, y = next(iter(loader))
    assert x.shape == (100, 1, 28, 28) and torch.equal(y, digits.labels[:100])


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(images=torch.zeros(4, 8, 8, dtype=torch.uint8)), ValueError, "4-D (N, C, H, W)"),
    (dict(images=torch.zeros(4, 1, 8, 8, dtype=torch.int32)), TypeError, "uint8"),
    (dict(labels=torch.zeros(4)), TypeError, "integer class indices"),
    (dict(labels=torch.zeros(5, dtype=torch.long)), ValueError, "4 images but 5 labels"),
    (dict(batch_size=0), ValueError, "positive int"),
    (dict(augment="rotate"), ValueError, "augment must be one of"),
    (dict(augment="crop", pad=8), ValueError, "pad < image size"),
    (dict(mean=(0.1, 0.2)), ValueError, "one per channel"),
    (dict(padding_mode="edge"), ValueError, "'reflect' or 'zeros'"),
])
def test_bad_input_gets_a_clear_error(kwargs, error, words):
    args = dict(images=torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
                labels=torch.zeros(4, dtype=torch.long), batch_size=2, device="cpu")
    args.update(kwargs)
    images, labels = args.pop("images"), args.pop("labels")
    with pytest.raises(error, match="GPULoader") as info:
        GPULoader(images, labels, **args)
    assert words in str(info.value)


def test_make_dataloader_and_worker_default(monkeypatch):
    data = torch.utils.data.TensorDataset(torch.arange(20.0).view(20, 1), torch.arange(20))
    loader = make_dataloader(data, 6, num_workers=0, seed=0)
    ys = torch.cat([y for _, y in loader])
    assert sorted(ys.tolist()) == list(range(20))
    again = torch.cat([y for _, y in make_dataloader(data, 6, num_workers=0, seed=0)])
    assert torch.equal(ys, again)
    with pytest.raises(TypeError, match="map-style Dataset"):
        make_dataloader(iter([1, 2]), 4)
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_num_workers() == 0
    monkeypatch.setattr(sys, "platform", "linux")
    assert 1 <= default_num_workers() <= 2


@pytest.mark.gpu
def test_loader_on_cuda_matches_cpu_layout():
    images, labels = indexed_images(64, channels=3, size=8)
    loader = GPULoader(images, labels, 16, augment="crop_flip", pad=2, seed=0, device="cuda")
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.shape == (16, 3, 8, 8)
    assert sorted(torch.cat([y for _, y in loader]).tolist()) == list(range(64))
