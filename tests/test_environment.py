"""environment.yml (conda) and pyproject.toml (pip) ask for the same packages.

Both list the runtime dependencies and the `test` and `book` extras with lower bounds
only. A package present in one and not the other, or a bound that differs, fails here.
Conda-forge names a few packages differently; NAME_MAP says how.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"
EXTRAS = ("test", "book")  # the extras environment.yml must carry
NAME_MAP = {"pytorch": "torch"}  # conda-forge name -> PyPI name
CONDA_ONLY = {"pip"}  # the installer itself, not a dependency of labcode

_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def pyproject_requirements(pyproject: dict) -> dict[str, SpecifierSet]:
    """{name: bounds} from the runtime dependencies plus EXTRAS, python included."""
    project = pyproject["project"]
    specs: dict[str, SpecifierSet] = {"python": SpecifierSet(project["requires-python"])}
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        specs[name] = specs.get(name, SpecifierSet()) & req.specifier
    return specs


def conda_requirements(environment: dict) -> dict[str, SpecifierSet]:
    """{PyPI name: bounds} from an environment.yml's conda dependencies."""
    specs: dict[str, SpecifierSet] = {}
    for entry in environment["dependencies"]:
        if not isinstance(entry, str):  # the `pip:` subsection
            continue
        match = _CONDA_SPEC.match(entry)
        if match is None:
            raise ValueError(f"environment.yml: cannot read dependency {entry!r}")
        conda_name, spec = match.groups()
        if conda_name in CONDA_ONLY:
            continue
        name = canonicalize_name(NAME_MAP.get(conda_name, conda_name))
        try:
            specs[name] = specs.get(name, SpecifierSet()) & SpecifierSet(spec)
        except InvalidSpecifier as err:
            raise ValueError(
                f"environment.yml: {entry!r} is not a plain version bound like '>=1.2'"
            ) from err
    return specs


def differences(pip: dict[str, SpecifierSet], conda: dict[str, SpecifierSet]) -> list[str]:
    """Human-readable list of every disagreement; empty when the two agree."""
    problems = []
    for name in sorted(pip.keys() - conda.keys()):
        problems.append(f"{name}{pip[name]} is in pyproject.toml but not in environment.yml")
    for name in sorted(conda.keys() - pip.keys()):
        problems.append(f"{name}{conda[name]} is in environment.yml but not in pyproject.toml")
    for name in sorted(pip.keys() & conda.keys()):
        if set(pip[name]) != set(conda[name]):
            problems.append(
                f"{name}: pyproject.toml asks for {str(pip[name]) or 'any version'}, "
                f"environment.yml for {str(conda[name]) or 'any version'}"
            )
    return problems


def load():
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    environment = yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))
    return pyproject, environment


def test_environment_matches_pyproject():
    pyproject, environment = load()
    problems = differences(pyproject_requirements(pyproject), conda_requirements(environment))
    assert problems == [], "environment.yml and pyproject.toml disagree:\n" + "\n".join(problems)


def test_environment_uses_conda_forge_and_installs_labcode():
    _, environment = load()
    assert environment["channels"] == ["conda-forge"]
    pip_sections = [e["pip"] for e in environment["dependencies"] if isinstance(e, dict)]
    assert pip_sections == [["-e ."]], f"expected one pip section installing '-e .', got {pip_sections}"


def test_no_exact_pins():
    pyproject, environment = load()
    for name, spec in {**pyproject_requirements(pyproject), **conda_requirements(environment)}.items():
        ops = {s.operator for s in spec}
        assert not ops & {"==", "===", "~="}, f"{name}{spec}: the project uses lower bounds only"


def test_a_difference_is_caught():
    """The comparison fails on a changed bound, a missing package and an extra one."""
    pyproject, environment = load()
    environment = {**environment, "dependencies": list(environment["dependencies"])}
    deps = environment["dependencies"]
    deps[deps.index("numpy>=1.23")] = "numpy>=1.24"
    deps.remove("tqdm>=4.60")
    deps.append("scipy>=1.10")
    problems = differences(pyproject_requirements(pyproject), conda_requirements(environment))
    assert any(p.startswith("numpy:") for p in problems), problems
    assert any(p.startswith("tqdm") and "not in environment.yml" in p for p in problems), problems
    assert any(p.startswith("scipy") and "not in pyproject.toml" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_conda_names_are_mapped():
    specs = conda_requirements({"dependencies": ["pytorch>=2.1", "pip", {"pip": ["-e ."]}]})
    assert specs == {"torch": SpecifierSet(">=2.1")}
    with pytest.raises(ValueError, match="plain version bound"):
        conda_requirements({"dependencies": ["numpy 1.2.*"]})
