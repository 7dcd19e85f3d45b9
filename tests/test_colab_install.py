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
dependencies (pip sees them as installed); tests/colab_fakes/environment.py builds it, for
this test and the Colab rehearsal (test_colab_rehearsal.py). Needs PyPI for the Colab
versions and for setuptools (build isolation); skips when those cannot be installed.
Slow: about a minute, most of it pip.
"""
from __future__ import annotations

import textwrap
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from colab_fakes.environment import (  # tests/colab_fakes: shared with the Colab rehearsal
    COLAB_VERSIONS, ROOT, git_repository, requirement_closure, run, shared_colab_venv, versions,
)
from labcode.colab import first_cell

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(python of the session's Colab-like venv, its versions at the start, a temp folder)."""
    python, before = shared_colab_venv(tmp_path_factory)
    return python, before, tmp_path_factory.mktemp("colab_install")


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
        "import google.colab  # the fake in tests/colab_fakes, as Colab's kernel imports it\n"
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


def test_closure_follows_the_extras_a_requirement_names():
    # torch requires cuda-toolkit[cufft,...]; the nvidia libraries come only with those extras,
    # and pip would download them (about 1 GB) if the closure missed them.
    try:
        toolkit = metadata.distribution("cuda-toolkit")
    except metadata.PackageNotFoundError:
        pytest.skip("this torch build does not depend on cuda-toolkit")
    via_cufft = [Requirement(line) for line in toolkit.requires or []]
    via_cufft = {canonicalize_name(r.name) for r in via_cufft
                 if r.marker is not None and r.marker.evaluate({"extra": "cufft"})
                 and not r.marker.evaluate({"extra": ""})}
    dists = {canonicalize_name(d.metadata["Name"]) for d in requirement_closure(("torch",), set())}
    assert via_cufft and via_cufft <= dists, via_cufft - dists
