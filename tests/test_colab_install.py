"""The notebooks' first cell, run in a Colab-like environment, keeps Colab's packages.

Builds a fresh virtual environment with the versions Google Colab ships (ipywidgets 7,
numpy and matplotlib behind the newest releases), runs the standard first cell there
as if on Colab (labcode installed with its default dependencies from a git
repository holding this working tree), and checks that

- no preinstalled package changed version,
- the cell warned about the missing GPU with the menu path,
- every labcode module imports, and ipywidgets widgets can be built.

torch and torchvision (Colab has both; several GB with their CUDA libraries) are not
downloaded: the new environment sees this environment's copies through a .pth file
pointing at a folder of symbolic links to exactly those distributions and their
dependencies (pip sees them as installed). Needs PyPI for the Colab versions and for
setuptools (build isolation); skips when those cannot be installed. Slow: about a
minute, most of it pip.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from labcode.colab import first_cell

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What Colab had preinstalled in late 2025 (python 3.12 there; these have 3.10-3.12 wheels).
COLAB_VERSIONS = {"numpy": "2.0.2", "matplotlib": "3.10.0", "ipywidgets": "7.7.1", "tqdm": "4.67.1"}
LINKED = ("torch", "torchvision")  # too big to install: linked from this environment
WATCHED = (*LINKED, *COLAB_VERSIONS)
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "labcode")


def requirement_closure(names: tuple[str, ...], skip: set[str]) -> list[metadata.Distribution]:
    """The installed distributions `names` need, transitively (markers honoured)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen or name in skip:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        seen[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
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


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    # Never this tree as the working directory: `python -c` would import ./labcode.
    cwd = cwd or Path(os.sep)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd)


def versions(python: Path) -> dict[str, str]:
    script = (
        "import json; from importlib.metadata import version\n"
        f"print(json.dumps({{n: version(n) for n in {list(WATCHED)!r}}}))"
    )
    done = run([str(python), "-c", script])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
           "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "labcode"]):
        done = run(git + args, cwd=repo)
        assert done.returncode == 0, done.stderr
    return repo


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(python of a Colab-like venv, versions before labcode was installed)."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to install labcode from a repository, as Colab does")
    tmp = tmp_path_factory.mktemp("colab")
    venv = tmp / "venv"
    done = run([sys.executable, "-m", "venv", str(venv)])
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    linked = tmp / "preinstalled"
    link_distributions(requirement_closure(LINKED, skip={"numpy"}), linked)
    (site / "colab_preinstalled.pth").write_text(str(linked) + "\n")
    pins = [f"{name}=={version}" for name, version in COLAB_VERSIONS.items()]
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    done = run(pip + ["pip>=24.1"])  # Colab's pip is recent; Python 3.11.7's own is not
    if done.returncode == 0:
        done = run(pip + pins)
    if done.returncode != 0:
        pytest.skip(f"cannot install Colab's versions from PyPI: {done.stderr[-600:]}")
    return python, versions(python), tmp


def test_first_cell_installs_labcode_without_changing_colab_packages(colab):
    python, before, tmp = colab
    assert before == {**before, **COLAB_VERSIONS}, before
    repo = git_repository(tmp)
    cell = first_cell("https://github.com/o/r", "main").replace(
        "git+https://github.com/o/r@main", f"git+file://{repo}@main"
    )
    assert f"git+file://{repo}@main" in cell
    script = tmp / "first_cell.py"
    script.write_text(
        "import sys, types\n"
        "sys.modules['google.colab'] = types.ModuleType('google.colab')  # pretend\n"
        + cell + "\n"
    )
    done = run([str(python), str(script)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(python) == before, "installing labcode changed Colab's packages"
    if "cuda" not in done.stdout.lower():  # this machine has no GPU: the warning is due
        assert "NO GPU" in done.stdout and "Runtime > Change runtime type > T4 GPU" in done.stdout
    installed = run([str(python), "-c", "import labcode; print(labcode.__file__)"])
    assert installed.returncode == 0 and str(ROOT) not in installed.stdout, installed


def test_every_labcode_module_and_widgets_work_with_colab_versions(colab):
    python, _, tmp = colab
    check = textwrap.dedent(
        """
        import importlib, pkgutil, sys, traceback
        import labcode, ipywidgets
        failed = []
        for info in pkgutil.walk_packages(labcode.__path__, "labcode."):
            try:
                importlib.import_module(info.name)
            except Exception:
                failed.append(info.name + ": " + traceback.format_exc(limit=2))
        ipywidgets.IntSlider(value=3, min=0, max=5)
        ipywidgets.VBox([ipywidgets.Label("x"), ipywidgets.Output()])
        print("ipywidgets", ipywidgets.__version__)
        if failed:
            sys.exit("\\n".join(failed))
        """
    )
    done = run([str(python), "-c", check])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ipywidgets {COLAB_VERSIONS['ipywidgets']}" in done.stdout


def test_closure_follows_requirements_and_skips():
    dists = {canonicalize_name(d.metadata["Name"]) for d in requirement_closure(("torchvision",), {"numpy"})}
    assert {"torchvision", "torch"} <= dists and "numpy" not in dists
