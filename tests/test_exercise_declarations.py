"""Every exercise is declared once (labcode/checks/chN.py) and asked for in its chapter's
solution notebook; a declaration makes the check and checks its own input."""
import ast
import inspect
import re
from pathlib import Path

import nbformat
import pytest

from labcode import checks as check
from labcode.checks import answers, ch1, ch2, ch3, core

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted(ROOT.glob("chapters/*/exercises_solutions.ipynb"))
CHAPTER_MODULES = {1: ch1, 2: ch2, 3: ch3}
CHECK_CALL = re.compile(r"\bcheck\.(\w+)\(")


def called_checks(nb: nbformat.NotebookNode) -> set[str]:
    """The NAMEs of every check.NAME( call in the notebook's code cells."""
    return {name for cell in nb.cells if cell.cell_type == "code" for name in CHECK_CALL.findall(cell.source)}


def chapter_of(path: Path) -> int:
    match = re.match(r"ch(\d+)_", path.parent.name)
    assert match, f"a chapter folder is named chN_..., got {path.parent.name!r}"
    return int(match.group(1))


def declared_in(module) -> set[str]:
    """The checks a chapter module declares: its module-level names bound to a declared check."""
    return {name for name, value in vars(module).items()
            if getattr(value, "exercise", None) is not None and core.CHECKS.get(name) is value}


def problems(notebooks: dict[int, set[str]], declared: dict[int, set[str]]) -> list[str]:
    """What is out of step between the solution notebooks' calls and the declarations."""
    found = []
    everywhere = set().union(*declared.values()) if declared else set()
    called = set().union(*notebooks.values()) if notebooks else set()
    for chapter, names in sorted(notebooks.items()):
        for name in sorted(names - declared.get(chapter, set())):
            where = "another chapter's module" if name in everywhere else "no declaration"
            found.append(f"chapter {chapter}'s solution notebook calls check.{name}, which has {where} "
                         f"(expected a declare({name!r}, ...) in labcode/checks/ch{chapter}.py)")
    for name in sorted(everywhere - called):
        found.append(f"check.{name} is declared but no solution notebook calls it")
    return found


def test_the_book_has_a_solution_notebook_per_chapter_module():
    assert [chapter_of(p) for p in SOLUTIONS] == sorted(CHAPTER_MODULES)


def test_solution_notebooks_and_declarations_match():
    notebooks = {chapter_of(p): called_checks(nbformat.read(str(p), as_version=4)) for p in SOLUTIONS}
    declared = {n: declared_in(module) for n, module in CHAPTER_MODULES.items()}
    assert set().union(*declared.values()) == set(check.CHECKS) == set(check.EXERCISES)
    assert problems(notebooks, declared) == []


def test_the_matching_finds_both_kinds_of_gap():
    declared = {1: {"conv2d", "padding_amount"}, 2: {"topk_error"}}
    assert problems({1: {"conv2d", "padding_amount"}, 2: {"topk_error"}}, declared) == []
    found = problems({1: {"conv2d", "conv3d", "topk_error"}}, declared)
    assert any("calls check.conv3d, which has no declaration" in p for p in found), found
    assert any("calls check.topk_error, which has another chapter's module" in p for p in found), found
    assert found[-1] == "check.padding_amount is declared but no solution notebook calls it"
    assert len(found) == 3, found
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check.conv2d(conv2d)\nx = check.EXERCISES"),
                                         nbformat.v4.new_markdown_cell("check.avg_pool2d(f)")])
    assert called_checks(nb) == {"conv2d"}


def test_a_declaration_is_the_check_the_notebook_calls():
    for name, fn in check.CHECKS.items():
        exercise = check.EXERCISES[name]
        assert getattr(check, name) is fn and fn.exercise is exercise and fn.__name__ == name
        assert fn.__doc__ and fn.__doc__.startswith("Check fn("), name
        assert exercise.reference is getattr(answers, name), name
        params = inspect.signature(fn).parameters
        assert ("device" in params) == (exercise.kind in ("tensor", "module")), name
        assert params["points"].default == exercise.points, name
    with pytest.raises(AttributeError, match="no check named 'conv3d'"):
        check.conv3d


def _declare(name="toy_double", **changes):
    spec = dict(signature=f"{name}(n) -> int", doc="Check fn(n) -> int, twice n.",
                reference=lambda n: 2 * n, make_cases=lambda: [core.Case((n,)) for n in range(5)],
                kind="int", points=3, time_limit=2.0,
                mistakes=[core.Mistake(lambda n: n, "multiply by two")])
    spec.update(changes)
    return core.declare(name, **spec)


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(core, "EXERCISES", dict(core.EXERCISES))
    monkeypatch.setattr(core, "CHECKS", dict(core.CHECKS))


def test_declare_registers_the_exercise_and_returns_its_check(fresh_registry):
    toy = _declare()
    assert core.CHECKS["toy_double"] is toy and core.EXERCISES["toy_double"] is toy.exercise
    assert toy.exercise.arg_names == ["n"]  # from the reference's parameters
    passed = toy(lambda n: n + n, verbose=False)
    assert passed.passed and passed.points == 3 and passed.max_points == 3 and passed.cases_total == 5
    failed = toy(lambda n: n, verbose=False)
    assert not failed.passed and "multiply by two" in failed.message and "n=1" in failed.message


@pytest.mark.parametrize("changes,error,words", [
    (dict(kind="float"), ValueError, "kind must be one of"),
    (dict(signature="double(n) -> int"), ValueError, "signature must start with 'toy_double('"),
    (dict(reference=None), TypeError, "reference must be a function, got NoneType"),
    (dict(mistakes=[("wrong", "hint")]), TypeError, "Mistake(fn, hint) items, got tuple"),
    (dict(points=-1), ValueError, "points must be a number >= 0, got -1"),
    (dict(time_limit=0), ValueError, "time_limit must be a number of seconds > 0, got 0"),
    (dict(doc="  "), ValueError, "doc must describe"),
])
def test_declare_rejects_bad_input_by_name(fresh_registry, changes, error, words):
    with pytest.raises(error, match=re.escape(words)):
        _declare(**changes)
    assert "toy_double" not in core.EXERCISES and "toy_double" not in core.CHECKS


def test_a_name_is_declared_once(fresh_registry):
    with pytest.raises(ValueError, match="'conv2d' is declared twice"):
        _declare("conv2d", signature="conv2d(n) -> int")
    with pytest.raises(ValueError, match="must be a Python identifier"):
        _declare("two words", signature="two words(n) -> int")


def test_no_module_reaches_into_private_names_of_calling():
    """calling's helpers that core and the grader need are public there (imports of another
    package's private module are caught by tests/test_validate.py)."""
    offences = []
    for path in sorted((ROOT / "labcode").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "calling" and node.attr.startswith("_") and not node.attr.startswith("__"):
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno} uses calling.{node.attr}")
    assert offences == []
