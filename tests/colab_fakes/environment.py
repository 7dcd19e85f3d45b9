"""A Colab-like virtual environment and a git repository holding this working tree.

`colab_venv` builds a fresh virtual environment with the versions Google Colab ships
(ipywidgets 7, numpy and matplotlib behind the newest releases, its Jupyter kernel) and
a fake `google.colab` package. torch and torchvision (Colab has both; several GB with
their CUDA libraries) are not downloaded: the new environment sees this environment's
copies through a .pth file pointing at a folder of symbolic links to exactly those
distributions and their dependencies, so pip sees them as installed. The Colab versions
come from PyPI; a test skips when they cannot be installed.

`git_repository` makes the one-commit repository (branch main) that Colab's first cell
installs labcode from; `github_redirect` writes a git configuration that sends the
book's GitHub URL to it, so the cell's text stays as it is.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent
# What Colab had preinstalled in late 2025 (python 3.12 there; these have 3.10-3.12 wheels).
COLAB_VERSIONS = {"numpy": "2.0.2", "matplotlib": "3.10.0", "ipywidgets": "7.7.1",
                  "tqdm": "4.67.1", "ipykernel": "6.17.1", "ipython": "7.34.0"}
LINKED = ("torch", "torchvision")  # too big to install: linked from this environment
WATCHED = (*LINKED, *COLAB_VERSIONS)
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "labcode")
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
       "-c", "init.defaultBranch=main"]


def requirement_closure(names: tuple[str, ...], skip: set[str]) -> list[metadata.Distribution]:
    """The installed distributions `names` need, transitively (markers and extras honoured).

    Extras matter: torch needs `cuda-toolkit[cublas,cufft,...]`, and only those extras pull
    in the nvidia-* libraries; without them pip would download about 1 GB of them again.
    """
    seen: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = [(name, frozenset()) for name in names]
    while todo:
        raw, extras = todo.pop()
        name = canonicalize_name(raw)
        wanted = {"", *extras}
        if name in skip or wanted <= extras_seen.get(name, set()):
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        seen[name] = dist
        extras_seen.setdefault(name, set()).update(wanted)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((req.name, frozenset(req.extras)))
    return list(seen.values())


def link_distributions(dists: list[metadata.Distribution], target: Path) -> None:
    """Symlink each distribution's top-level files and its .dist-info into `target`."""
    target.mkdir(parents=True)
    for dist in dists:
        base = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            link = target / top
            if not link.exists() and (base / top).exists():
                link.symlink_to(base / top)


def run(args: list[str], cwd: Path | None = None, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    # Never this tree as the working directory: `python -c` would import ./labcode.
    cwd = cwd or Path(os.sep)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env)


def versions(python: Path) -> dict[str, str]:
    """The installed versions of the WATCHED distributions in `python`'s environment."""
    script = (
        "import json; from importlib.metadata import version\n"
        f"print(json.dumps({{n: version(n) for n in {list(WATCHED)!r}}}))"
    )
    done = run([str(python), "-c", script])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def colab_venv(tmp: Path) -> Path:
    """The python of a new Colab-like venv under `tmp` (skips when PyPI is out of reach).

    Holds Colab's versions of the COLAB_VERSIONS packages, this environment's torch and
    torchvision, and the fake `google.colab` package (not imported: the kernel or the
    script imports it, as Colab's kernel does at start).
    """
    if shutil.which("git") is None:
        pytest.skip("git is needed to install labcode from a repository, as Colab does")
    venv = tmp / "venv"
    done = run([sys.executable, "-m", "venv", str(venv)])
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c",
                     "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    linked = tmp / "preinstalled"
    link_distributions(requirement_closure(LINKED, skip={"numpy"}), linked)
    (site / "colab_preinstalled.pth").write_text(str(linked) + "\n")
    shutil.copytree(FAKES / "google", site / "google",
                    ignore=shutil.ignore_patterns("__pycache__"))
    pins = [f"{name}=={version}" for name, version in COLAB_VERSIONS.items()]
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    done = run(pip + ["pip>=24.1"])  # Colab's pip is recent; Python 3.11.7's own is not
    if done.returncode == 0:
        done = run(pip + pins)
    if done.returncode != 0:
        pytest.skip(f"cannot install Colab's versions from PyPI: {done.stderr[-600:]}")
    return python


_SHARED: dict[Path, tuple[Path, dict[str, str]]] = {}


def shared_colab_venv(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One Colab-like venv per test session: (its python, the WATCHED versions it started with).

    test_colab_install and the Colab rehearsal both use it, so it is built once (about a
    minute, most of it pip). Each test compares against the versions it started with.
    """
    base = tmp_path_factory.getbasetemp()
    if base not in _SHARED:
        python = colab_venv(tmp_path_factory.mktemp("colab"))
        _SHARED[base] = (python, versions(python))
    return _SHARED[base]


def git_repository(tmp: Path) -> Path:
    """A one-commit git repository (branch main) with labcode's sources from this tree."""
    repo = tmp / "repo"
    repo.mkdir()
    for name in SOURCE_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, repo / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "labcode"]):
        done = run(GIT + args, cwd=repo)
        assert done.returncode == 0, done.stderr
    return repo


def github_redirect(repository_url: str, repo: Path, config: Path) -> Path:
    """Write a git config file at `config` that fetches `repository_url` from `repo`.

    Point GIT_CONFIG_GLOBAL at it: git then rewrites the URL (`url.<base>.insteadOf`),
    so `pip install git+<repository_url>` clones the local repository.
    """
    done = run(["git", "config", "--file", str(config),
                f"url.{repo.as_uri()}.insteadOf", repository_url.rstrip("/")])
    assert done.returncode == 0, done.stderr
    return config
