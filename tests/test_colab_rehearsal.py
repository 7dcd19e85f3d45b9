"""The Colab rehearsal: every teaching notebook, run the way a Colab student runs it.

For each of the nine teaching notebooks, in a fresh Jupyter kernel of a virtual
environment that holds Colab's versions of torch, numpy, matplotlib, ipywidgets and
ipykernel (tests/colab_fakes/environment.py):

- `google.colab` is imported when the kernel starts, as on Colab, so the notebook's own
  first cell takes its Colab branch: it installs labcode with pip from the repository URL
  in `_config.yml`, which git sends to a local repository holding this working tree
  (`url.<local>.insteadOf` in a git config of the test's own). Colab's packages must be
  unchanged afterwards, and labcode must be imported from the installed copy;
- `DATASET = "cifar10"`: the notebook copy switches the data set, and CIFAR-10 comes from
  a server on 127.0.0.1 serving a small archive in CIFAR-10's real format
  (LABCODE_CIFAR10_URL, with its MD5 in LABCODE_CIFAR10_MD5);
- the pretrained-weight cells load torchvision-shaped weights (random values, saved from
  torchvision's own constructors) from torch hub's cache under torchvision's file names.

Everything runs in quick mode (LABCODE_QUICK=1). The notebooks' outputs must show that the
CIFAR-10 path and the pretrained path ran rather than skipped. Separately, a cached state
dict that does not fit the model must make each pretrained cell raise, not skip.

Needs PyPI (Colab's versions, setuptools for pip's build of labcode) and git; skips
without them. Slow: the environment (shared with test_colab_install) takes about a minute
to build; each notebook then costs its quick-mode run plus one pip install of labcode
(about 10 s). Measured together with test_colab_install: about 300 s of CPU time.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch
import torchvision.models as tvm
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from colab_fakes.downloads import (
    CIFAR10_NAME, FileServer, cache_pretrained, cifar10_archive, hub_checkpoint,
)
from colab_fakes.environment import (
    COLAB_VERSIONS, ROOT, git_repository, github_redirect, shared_colab_venv, versions,
)
from labcode import colab
from labcode.data import formats, load_cifar10

TEACHING = sorted(ROOT.glob("chapters/ch[1-3]_*/0[1-3]_*.ipynb"))
CIFAR10_NOTEBOOKS = {"02_pooling", "03_fully_connected", "01_alexnet", "02_efficientnetv2",
                     "03_experiments"}
PRETRAINED = {  # notebook: (torchvision weights, torchvision's constructor)
    "01_alexnet": (tvm.AlexNet_Weights.IMAGENET1K_V1, tvm.alexnet),
    "02_efficientnetv2": (tvm.EfficientNet_V2_S_Weights.IMAGENET1K_V1, tvm.efficientnet_v2_s),
    "02_encoder_and_attention": (tvm.ViT_B_16_Weights.IMAGENET1K_V1, tvm.vit_b_16),
    "03_experiments": (tvm.ViT_B_16_Weights.IMAGENET1K_V1, tvm.vit_b_16),
}
DATASET_LINE = re.compile(r'^DATASET = "digits"', re.MULTILINE)
CELL_TIMEOUT = 300  # seconds; the first cell's pip install is the slowest
KERNEL = "colab-rehearsal"
# Appended to each notebook copy: where the kernel found labcode and google.colab.
PROBE = ('import google.colab, labcode\n'
         'print("rehearsal probe:", labcode.__file__, "google.colab" in sys.modules)')


def test_the_nine_teaching_notebooks_are_found():
    assert len(TEACHING) == 9, [p.name for p in TEACHING]
    assert {p.stem for p in TEACHING} >= CIFAR10_NOTEBOOKS | set(PRETRAINED)


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"]


def text_of(nb) -> str:
    """Everything the notebook printed or displayed as text, errors included."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif out.get("output_type") == "error":
                parts.append("\n".join(out.get("traceback", [])))
            else:
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@dataclass
class Rehearsal:
    python: Path
    before: dict[str, str]
    tmp: Path
    server: FileServer
    env: dict[str, str]
    kernels: Path


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """The Colab-like environment, kernel, git redirect, CIFAR-10 server and weight cache."""
    python, before = shared_colab_venv(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("rehearsal")
    gitconfig = github_redirect(repository_url(), git_repository(tmp), tmp / "gitconfig")
    torch_home = tmp / "torch"
    for weights, builder in PRETRAINED.values():
        cache_pretrained(torch_home, weights, builder)
    served = tmp / "served"
    served.mkdir()
    md5 = cifar10_archive(served / CIFAR10_NAME)
    kernels = tmp / "kernels"
    spec = kernels / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], '
        '"display_name": "Colab rehearsal", "language": "python"}' % python)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    server = FileServer(served)
    env.update(LABCODE_QUICK="1", LABCODE_CIFAR10_URL=server.url, LABCODE_CIFAR10_MD5=md5,
               TORCH_HOME=str(torch_home), GIT_CONFIG_GLOBAL=str(gitconfig),
               GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", MPLBACKEND="agg",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("LABCODE_PRETRAINED", None)
    yield Rehearsal(python, before, tmp, server, env, kernels)
    server.close()


def colab_copy(path: Path):
    """The notebook as the rehearsal runs it: CIFAR-10 switched on, a probe cell at the end."""
    nb = nbformat.read(path, as_version=4)
    switched = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source, n = DATASET_LINE.subn('DATASET = "cifar10"', cell.source)
            switched += n
    assert switched == (path.stem in CIFAR10_NOTEBOOKS), f"{path.name}: {switched} DATASET lines"
    nb.cells.append(nbformat.v4.new_code_cell("import sys\n" + PROBE))
    return nb


def execute(nb, workdir: Path, env: dict[str, str], km=None, kernel_name: str = "python3",
            extra_arguments: list[str] | None = None):
    client = NotebookClient(nb, km=km, kernel_name=kernel_name, timeout=CELL_TIMEOUT,
                            extra_arguments=extra_arguments or [], shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env, cleanup_kc=True)   # stop the kernel, also one given as `km`
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("path", TEACHING, ids=lambda p: p.stem)
def test_notebook_runs_as_on_colab(rehearsal, path):
    workdir = rehearsal.tmp / "work" / path.parent.name
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**rehearsal.env, "LABCODE_DATA": str(rehearsal.tmp / "data" / path.stem)}
    requests_before = len(rehearsal.server.requests)
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(rehearsal.kernels)]))
    nb = execute(colab_copy(path), workdir, env, km=km,
                 extra_arguments=["--IPKernelApp.exec_lines=import google.colab"])
    text = text_of(nb)

    # The first cell took its Colab branch and installed labcode; Colab's packages stayed.
    assert versions(rehearsal.python) == rehearsal.before, "labcode's install changed Colab's packages"
    assert rehearsal.before == {**rehearsal.before, **COLAB_VERSIONS}
    if not torch.cuda.is_available():
        assert "NO GPU. Menu: Runtime > Change runtime type > T4 GPU" in text, text[:2000]
    probe = re.search(r"rehearsal probe: (\S+) (\w+)", text)
    assert probe, text[-2000:]
    assert probe.group(2) == "True"
    installed = Path(probe.group(1))
    assert rehearsal.python.parent.parent in installed.parents, installed   # the venv's copy
    assert ROOT not in installed.parents, installed

    # CIFAR-10 came from the local server, once, and the notebook used it.
    served = rehearsal.server.requests[requests_before:]
    if path.stem in CIFAR10_NOTEBOOKS:
        assert served == [CIFAR10_NAME], served       # train and test: one download, then the cache
        assert re.search(r"cifar10: [\d,]+ training images of 3x32x32", text), text[:3000]
    else:
        assert served == []

    # The pretrained cell loaded the cached weights with strict=True instead of skipping.
    assert "Skipped" not in text, [line for line in text.splitlines() if "Skipped" in line]
    if path.stem in PRETRAINED:
        assert "<All keys matched successfully>" in text, text[-3000:]


def pretrained_cells(path: Path) -> list:
    """The notebook's code cells up to its imports (Colab cell, DATASET), and its pretrained cell."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    imports = next(i for i, c in enumerate(code) if "start_time = time.perf_counter()" in c.source)
    pretrained = [c for c in code if "pretrained_state_dict(" in c.source]
    assert len(pretrained) == 1, f"{path.name}: {len(pretrained)} pretrained-weight cells"
    return code[:imports + 1] + pretrained


@pytest.mark.slow
def test_a_mismatching_cached_state_dict_makes_each_pretrained_cell_raise(tmp_path):
    # The right file names, a state dict of the wrong shape: a bug, which must not be skipped.
    torch_home = tmp_path / "torch"
    for weights, _ in PRETRAINED.values():
        hub_checkpoint(torch_home, weights).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"features.0.weight": torch.zeros(3)}, hub_checkpoint(torch_home, weights))
    env = {**os.environ, "TORCH_HOME": str(torch_home), "LABCODE_QUICK": "1"}
    env.pop("LABCODE_PRETRAINED", None)
    # The notebooks' cells in one kernel (one start instead of one per notebook); errors recorded.
    cells = [nbformat.v4.new_code_cell(cell.source) for stem in sorted(PRETRAINED)   # fresh ids
             for cell in pretrained_cells(next(p for p in TEACHING if p.stem == stem))]
    nb = nbformat.v4.new_notebook(cells=cells)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, allow_errors=True, shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)
    failed = [c for c in nb.cells if any(o.output_type == "error" for o in c.outputs)]
    assert [c.source for c in failed] == [c.source for c in cells if "pretrained_state_dict(" in c.source]
    for cell in failed:
        error = next(o for o in cell.outputs if o.output_type == "error")
        assert error.ename == "RuntimeError" and "Error(s) in loading state_dict" in error.evalue, error
    assert "Skipped" not in text_of(nb)


# ---------------------------------------------------------------- the pieces, in process

class FakeWeights:
    """What pretrained_state_dict reads from a torchvision Weights member: its URL."""

    def __init__(self, url: str):
        self.url = url


def sha256_prefix(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LABCODE_PRETRAINED", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_cached_weights_load_anywhere(hub):
    weights = tvm.AlexNet_Weights.IMAGENET1K_V1
    assert colab.hub_checkpoint(weights) == hub / "alexnet-owt-7be5be79.pth"
    hub.mkdir(parents=True)
    torch.save({"w": torch.arange(3.0)}, hub / "alexnet-owt-7be5be79.pth")
    state = colab.pretrained_state_dict(weights)
    assert torch.equal(state["w"], torch.arange(3.0))


def test_no_cache_and_no_colab_skips_with_the_reason(hub, capsys):
    assert colab.pretrained_state_dict(tvm.ViT_B_16_Weights.IMAGENET1K_V1) is None
    out = capsys.readouterr().out
    assert out.startswith("Skipped: vit_b_16-c867db91.pth is not in torch hub's cache")
    assert "LABCODE_PRETRAINED=1" in out and not hub.exists()


def test_a_failed_download_skips(hub, monkeypatch, capsys):
    monkeypatch.setenv("LABCODE_PRETRAINED", "1")
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/models/tiny-0123abcd.pth"
    assert colab.pretrained_state_dict(FakeWeights(url), progress=False) is None
    out = capsys.readouterr().out
    assert out.startswith(f"Skipped: could not download {url} (URLError") and "offline" in out
    assert not (hub / "tiny-0123abcd.pth").exists()


def test_download_checks_the_hash_in_the_name(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("LABCODE_PRETRAINED", "1")
    served = tmp_path / "served"
    served.mkdir()
    torch.save({"w": torch.ones(2)}, served / "tiny.pth")
    good = f"tiny-{sha256_prefix(served / 'tiny.pth')}.pth"
    (served / "tiny.pth").rename(served / good)
    (served / "bad-00000000.pth").write_bytes((served / good).read_bytes())
    server = FileServer(served)
    try:
        state = colab.pretrained_state_dict(FakeWeights(server.url + good), progress=False)
        assert torch.equal(state["w"], torch.ones(2)) and (hub / good).exists()
        # A file whose bytes do not match the hash in its name is an error, not a skip.
        with pytest.raises(RuntimeError, match="hash"):
            colab.pretrained_state_dict(FakeWeights(server.url + "bad-00000000.pth"), progress=False)
        assert not (hub / "bad-00000000.pth").exists()
    finally:
        server.close()


def test_a_corrupt_cached_file_raises(hub):
    hub.mkdir(parents=True)
    (hub / "alexnet-owt-7be5be79.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception) as info:
        colab.pretrained_state_dict(tvm.AlexNet_Weights.IMAGENET1K_V1)
    assert not isinstance(info.value, colab.DOWNLOAD_ERRORS)


def test_hub_checkpoint_names_what_it_expected():
    with pytest.raises(TypeError, match="torchvision Weights member.*got 'alexnet'"):
        colab.hub_checkpoint("alexnet")


def test_a_mirror_may_name_its_own_md5(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    md5 = cifar10_archive(served / CIFAR10_NAME, per_batch=3, test=4)
    server = FileServer(served)
    try:
        monkeypatch.setenv("LABCODE_CIFAR10_URL", server.url)
        monkeypatch.setenv("LABCODE_CIFAR10_MD5", md5.upper())
        train = load_cifar10("train", root=tmp_path / "cache", progress=False)
        assert train.images.shape == (15, 3, 32, 32) and train.classes[0] == "airplane"
        assert len(load_cifar10("test", root=tmp_path / "cache", progress=False)) == 4
        assert server.requests == [CIFAR10_NAME]
    finally:
        server.close()


def test_the_official_archive_keeps_the_official_md5(monkeypatch):
    monkeypatch.delenv("LABCODE_CIFAR10_URL", raising=False)
    monkeypatch.setenv("LABCODE_CIFAR10_MD5", "0" * 32)
    official = formats.CIFAR10_FILES[CIFAR10_NAME]
    with pytest.raises(ValueError, match=f"applies only to a mirror.*must have md5 {official}"):
        load_cifar10("train", progress=False)


def test_a_malformed_md5_is_refused(monkeypatch):
    monkeypatch.setenv("LABCODE_CIFAR10_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("LABCODE_CIFAR10_MD5", "abc")
    with pytest.raises(ValueError, match="32 hex digits, got 'abc'"):
        load_cifar10("train", progress=False)


def test_first_keeps_the_first_n_images_and_checks_n():
    from labcode.data import load_digits

    digits = load_digits("test")
    head = digits.first(7)
    assert torch.equal(head.images, digits.images[:7]) and torch.equal(head.labels, digits.labels[:7])
    assert head.classes == digits.classes and len(digits.first(10_000)) == len(digits)
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=f"n must be an int >= 0, got {bad!r}"):
            digits.first(bad)
