"""The machinery behind every exercise check: declaring, cases, comparison, hints and messages.

An exercise is declared once, with `declare`, in its chapter's module (labcode/checks/ch1.py
for chapter 1): the name the notebook calls (`check.conv2d`), the one-line signature and
the contract, the reference solution from `labcode.checks.answers`, a deterministic list
of test cases ordered from small to large, the kind of answer (an int, a tuple of ints, a
number, a tensor, a list of shapes), the usual mistakes, each a wrong function with a
hint, the points and the time limit. `declare` records the `Exercise` for the grader and
returns the public check function. `run_check` calls the student's function on
each case through `labcode.checks.calling` and stops at the first failure, so the message
shows the smallest input that goes wrong. A failing output is compared with the output of
each known mistake: a match names the mistake.

Numbers are compared with a relative error in the spirit of CS231n's,

    rel_error(a, b) = max|a - b| / max(1e-8, max(|a| + |b|)),

taken over the whole tensor so that values near zero do not dominate; it must stay below
1e-5 for float64 and 1e-4 for float32. Integers and shapes are compared exactly.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from labcode.checks import calling

TOLERANCE = {torch.float64: 1e-5, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}
NUMBER_TOLERANCE = 1e-6
KINDS = ("int", "ints", "number", "tensor", "shapes", "module", "choice")
# "module": the student hands in an nn.Module class; each case builds it, loads the given
#           weights (a state dict) and runs it on an input (calling.module_runner); outputs
#           are compared as tensors. The reference and the mistakes are classes too.
# "choice": a question's answer, one option ('B') or a set of them ({2, 5}), compared as a
#           set; strings ignore case and surrounding spaces. Options are declared.


@dataclass(frozen=True)
class Case:
    """One input: the positional and keyword arguments the student's function receives."""

    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A usual wrong answer, written as a function, and the hint shown when a student's output matches it."""

    fn: Callable
    hint: str


@dataclass
class Exercise:
    """Everything one check needs; made by `declare`. `make_cases` must be deterministic (fixed seeds).

    `arg_names` label the positional arguments in messages; by default they are the
    reference's parameter names.
    """

    name: str
    signature: str
    reference: Callable
    make_cases: Callable[[], list[Case]]
    kind: str
    mistakes: list[Mistake] = field(default_factory=list)
    points: float = 1
    time_limit: float = 5.0
    tolerance: float | None = None
    arg_names: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    forbid_answer_key: bool = True  # tests of the checks themselves turn it off to run the key
    explanation: str = ""  # a question's reasoning: shown once it is answered right; the answer is never shown
    options: tuple = ()    # the options of a "choice" question

    def runner(self, fn: Callable) -> Callable:
        """What a case calls: fn itself, or for a module exercise the class built, loaded and run."""
        return calling.module_runner(fn) if self.kind == "module" else fn

    def forbidden_calls(self) -> list[tuple[str, str, str]]:
        """(module, qualified name, shown name) of every function this exercise forbids.

        The declared dotted names that resolve (torch's built-in of the operation, labcode's
        own implementation), plus the answer key's function. Names that do not resolve in
        this torch or labcode are skipped.
        """
        if self._resolved is None:
            found: list[tuple[str, str, str]] = []
            key_name = f"{self.reference.__module__}.{self.reference.__name__}"
            keys = [key_name, *([f"{key_name}.forward"] if isinstance(self.reference, type) else [])]
            for dotted in [*self.forbidden, *(keys if self.forbid_answer_key else [])]:
                fn = _resolve(dotted)
                if fn is None:
                    continue
                key = calling.function_key(fn)
                if "<locals>" not in key[1] and all(key != f[:2] for f in found):
                    found.append((*key, dotted))
            self._resolved = found
        return self._resolved

    def __post_init__(self) -> None:
        where = f"Exercise {self.name!r}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"{where}: the name must be a Python identifier (check.NAME), got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.signature, str) or not self.signature.startswith(self.name + "("):
            raise ValueError(f"{where}: signature must start with '{self.name}(', got {self.signature!r}")
        for label, value in (("reference", self.reference), ("make_cases", self.make_cases)):
            if not callable(value):
                raise TypeError(f"{where}: {label} must be a function, got {type(value).__name__}")
        self.mistakes = list(self.mistakes)
        for mistake in self.mistakes:
            if not isinstance(mistake, Mistake):
                raise TypeError(f"{where}: mistakes must be Mistake(fn, hint) items, got {type(mistake).__name__}")
        if isinstance(self.points, bool) or not isinstance(self.points, (int, float)) or self.points < 0:
            raise ValueError(f"{where}: points must be a number >= 0, got {self.points!r}")
        if isinstance(self.time_limit, bool) or not isinstance(self.time_limit, (int, float)) or self.time_limit <= 0:
            raise ValueError(f"{where}: time_limit must be a number of seconds > 0, got {self.time_limit!r}")
        if self.kind == "choice":
            if not isinstance(self.options, tuple) or len(self.options) < 2:
                raise ValueError(f"{where}: a choice question needs a tuple of at least 2 options, got {self.options!r}")
        elif self.options:
            raise ValueError(f"{where}: options are for kind 'choice', not {self.kind!r}")
        if not isinstance(self.explanation, str):
            raise TypeError(f"{where}: explanation must be a str, got {type(self.explanation).__name__}")
        if self.kind == "module" and not self.arg_names:
            self.arg_names = ["init_args", "weights", "x"]
        if not self.arg_names:
            positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            self.arg_names = [p.name for p in inspect.signature(self.reference).parameters.values()
                              if p.kind in positional]
        self.arg_names = list(self.arg_names)
        self.forbidden = list(self.forbidden)
        self._resolved: list[tuple[str, str, str]] | None = None


def _resolve(dotted: str) -> Any:
    """The object a dotted name such as 'torch.nn.functional.conv2d' names, or None."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj if callable(obj) else None
    return None


def imported_names(tree: Any) -> dict[str, str]:
    """What each name bound by the imports in an ast tree stands for: `F` -> 'torch.nn.functional'."""
    import ast

    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def forbidden_in_source(source: str, function: str, exercise: Exercise, aliases: dict[str, str] | None = None) -> list[str]:
    """Forbidden functions named in the code of `function` (a def in `source`), read without running it.

    `aliases` maps a name to the dotted name it stands for (`F` -> 'torch.nn.functional');
    the imports in `source` are added to it. A name is reported when the dotted name it
    resolves to is one the exercise forbids: `F.conv2d` with `import torch.nn.functional as F`.
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = {**(aliases or {}), **imported_names(tree)}
    wanted = {shown for _, _, shown in exercise.forbidden_calls()}
    wanted |= set(exercise.forbidden)
    keys = {f[:2]: f[2] for f in exercise.forbidden_calls()}
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == function):
            continue
        for inner in ast.walk(node):
            dotted = _dotted(inner, names) if isinstance(inner, (ast.Attribute, ast.Name)) else None
            if dotted is None:
                continue
            shown = dotted if dotted in wanted else None
            if shown is None and any(dotted.endswith("." + s.rsplit(".", 1)[-1]) for s in wanted):
                obj = _resolve(dotted)
                shown = keys.get(calling.function_key(obj)) if obj is not None else None
            if shown and shown not in found:
                found.append(shown)
    return found


def _dotted(node: Any, names: dict[str, str]) -> str | None:
    import ast

    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in names:
        return None
    return ".".join([names[node.id], *reversed(parts)])


@dataclass
class CheckResult:
    """What a check found. `points` is what was earned: `max_points` if passed, else 0."""

    name: str
    passed: bool
    attempted: bool
    message: str
    points: float = 0.0
    max_points: float = 1.0
    cases_passed: int = 0
    cases_total: int = 0

    def __repr__(self) -> str:
        state = "passed" if self.passed else ("failed" if self.attempted else "not attempted")
        return f"<CheckResult {self.name}: {state}, {self.points:g}/{self.max_points:g} points>"

    def _ipython_display_(self) -> None:
        """Show nothing when the result is a cell's last value: the message was printed already."""

    def to_dict(self) -> dict:
        return {
            "exercise": self.name, "passed": self.passed, "attempted": self.attempted,
            "points": self.points, "max_points": self.max_points,
            "cases_passed": self.cases_passed, "cases_total": self.cases_total,
            "message": self.message,
        }


EXERCISES: dict[str, Exercise] = {}  # what the grader reads
CHECKS: dict[str, Callable[..., CheckResult]] = {}  # what a notebook calls: check.NAME


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry the grader reads (`EXERCISES`); a name may be used once."""
    if exercise.name in EXERCISES:
        raise ValueError(f"an exercise named {exercise.name!r} is declared twice; each name may be declared once")
    EXERCISES[exercise.name] = exercise
    return exercise


def declare(
    name: str,
    *,
    signature: str,
    doc: str,
    reference: Callable,
    make_cases: Callable[[], list[Case]],
    kind: str,
    mistakes: Sequence[Mistake] = (),
    points: float = 1,
    time_limit: float = 5.0,
    tolerance: float | None = None,
    arg_names: Sequence[str] = (),
    forbidden: Sequence[str] = (),
    explanation: str = "",
    options: Sequence = (),
) -> Callable[..., CheckResult]:
    """Declare one exercise and return its check, the function a notebook calls as check.NAME(fn).

    The exercise goes into `EXERCISES` (the grader's registry) and the check into `CHECKS`
    (what `labcode.checks` serves as check.NAME). The check takes the keyword arguments
    time_limit, points and verbose, plus device for tensor answers, and `help()` on it
    shows `doc`.

    Args:
        name: what the notebook calls, check.<name>; also the exercise's name in grading.
        signature: the student's function in one line, starting with `name(`.
        doc: the contract: inputs, output and conventions, as help(check.<name>) shows them.
        reference: the right answer, a function of labcode.checks.answers.
        make_cases: returns the inputs (`Case`s), smallest first, the same every run (`seeded`).
        kind: how answers are compared, one of KINDS.
        mistakes: usual wrong answers, each with the hint shown when a student's output equals its output.
        points: what a pass is worth, in the check and in grading, unless the notebook says otherwise.
        time_limit: seconds for the whole check.
        tolerance: the relative error allowed, instead of the default for the answer's dtype.
        arg_names: names of the positional arguments in messages (default: the reference's).
        forbidden: dotted names of functions the answer may not be or call: torch's built-in
            of the same operation, labcode's own implementation (the answer key always is).
        explanation: for a question or an experiment: why the answer is right, shown with
            the pass; a failing message then never shows the expected answer.
        options: the options of a "choice" question ('A' to 'D', or sentence numbers).
    """
    if not isinstance(doc, str) or not doc.strip():
        raise ValueError(f"declare({name!r}): doc must describe the exercise's contract, got {doc!r}")
    exercise = register(Exercise(name=name, signature=signature, reference=reference, make_cases=make_cases,
                                 kind=kind, mistakes=list(mistakes), points=points, time_limit=time_limit,
                                 tolerance=tolerance, arg_names=list(arg_names), forbidden=list(forbidden),
                                 explanation=inspect.cleandoc(explanation) if explanation else "",
                                 options=tuple(options)))
    check = _check_function(exercise)
    check.__name__ = check.__qualname__ = name
    check.__module__ = "labcode.checks"
    check.__doc__ = inspect.cleandoc(doc)
    check.exercise = exercise  # type: ignore[attr-defined]
    CHECKS[name] = check
    return check


def _check_function(exercise: Exercise) -> Callable[..., CheckResult]:
    """The public check of one exercise; only checks of tensor answers (and modules) take a device."""
    if exercise.kind in ("tensor", "module"):
        def check(fn: Any, *, time_limit: float | None = None, device: str | torch.device | None = None,
                  points: float = exercise.points, verbose: bool = True) -> CheckResult:
            return run_check(exercise, fn, time_limit=time_limit, device=device, points=points, verbose=verbose)
    else:
        def check(fn: Any, *, time_limit: float | None = None, points: float = exercise.points,
                  verbose: bool = True) -> CheckResult:
            return run_check(exercise, fn, time_limit=time_limit, points=points, verbose=verbose)
    return check


_DRAW_SEED: list[int] = []


def seeded(name: str) -> tuple[torch.Generator, Any]:
    """A torch generator and a random.Random seeded from the exercise name: same cases every run.

    Inside `cases_drawn_with(seed)` (the grader, with a seed the submission cannot know) the
    seed mixes in too, so the random cases differ from the ones a notebook's checks use.
    """
    import random

    seed = zlib.crc32(name.encode()) ^ (_DRAW_SEED[-1] if _DRAW_SEED else 0)
    return torch.Generator().manual_seed(seed), random.Random(seed)


def cases_for(exercise: Exercise, seed: int | None = None) -> list[Case]:
    """The exercise's cases; drawn with `seed` mixed into every random choice when it is given."""
    if seed is None:
        return exercise.make_cases()
    _DRAW_SEED.append(int(seed) & 0xFFFFFFFF)
    try:
        return exercise.make_cases()
    finally:
        _DRAW_SEED.pop()


# ---------------------------------------------------------------------------------------
# Running a check


class CheckFailed(AssertionError):
    """Raised by a failing check in strict mode (LABCODE_STRICT=1 or set_strict(True))."""


_STRICT: list[bool] = []


def set_strict(on: bool = True) -> None:
    """Strict mode: a check that does not pass raises CheckFailed after printing its message.

    For CI and autograders (nbval, nbgrader): a failing check then fails the cell. Off by
    default, so a student's notebook keeps running; LABCODE_STRICT=1 in the environment
    turns it on too.
    """
    _STRICT[:] = [bool(on)]


def is_strict() -> bool:
    import os

    return _STRICT[0] if _STRICT else os.environ.get("LABCODE_STRICT", "") not in ("", "0")


def run_check(
    exercise: Exercise,
    fn: Any,
    *,
    time_limit: float | None = None,
    device: str | torch.device | None = None,
    points: float = 1.0,
    verbose: bool = True,
) -> CheckResult:
    """Check `fn` against `exercise` in this process; print and return the result.

    Never raises, except CheckFailed in strict mode (`set_strict`).
    """
    try:
        with _full_float32_precision():
            result = _run_local(exercise, fn, time_limit, device, points)
    except Exception as error:  # a bug in labcode must not stop the student's notebook
        result = CheckResult(
            exercise.name, False, True,
            f"⚠️ {exercise.name}: the check itself failed ({type(error).__name__}: {error}). "
            "This is labcode's fault, not yours: please report it.",
            0.0, points,
        )
    if verbose:
        print(result.message)
    if not result.passed and is_strict():
        raise CheckFailed(result.message)
    return result


@contextlib.contextmanager
def _full_float32_precision():
    """Turn off TF32 on CUDA while a check runs: its 10-bit mantissa would miss the 1e-4 tolerance."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _run_local(exercise: Exercise, fn: Any, time_limit: float | None,
               device: str | torch.device | None, points: float) -> CheckResult:
    if not callable(fn):
        return CheckResult(
            exercise.name, False, fn is not None,
            f"❌ {exercise.name}: expected your function itself, as in "
            f"check.{exercise.name}(my_function), got {_short_type(fn)}.",
            0.0, points,
        )
    cases = exercise.make_cases()
    budget = exercise.time_limit if time_limit is None else time_limit
    forbidden = exercise.forbidden_calls()
    itself = calling.forbidden_itself(fn, forbidden)
    read = _forbidden_in_code(fn, exercise)
    state = {"used": 0.0}
    # "cuda" means the current GPU: name it the way tensors report it ("cuda:0").
    target = None if device is None else str(torch.empty(0, device=device).device)

    def outcome_of(index: int, case: Case) -> dict:
        left = budget - state["used"]
        if left <= 0:
            return {"status": "timeout", "seconds": 0.0}
        args, kwargs = case.args, case.kwargs
        if target is not None:
            args, kwargs = calling.to_device(args, target), calling.to_device(kwargs, target)
        if itself:
            return {"status": "forbidden", "calls": itself, "itself": True}
        if read:
            return {"status": "forbidden", "calls": read, "read": True}
        outcome = calling.run_case(exercise.runner(fn), args, kwargs, exercise.arg_names, left, forbidden)
        state["used"] += outcome.get("seconds", 0.0)
        return outcome

    return evaluate(exercise, cases, outcome_of, points, budget, input_device=target or "cpu")


def _forbidden_in_code(fn: Any, exercise: Exercise) -> list[str]:
    """Forbidden functions the code of fn names, resolved through fn's globals (empty when unreadable)."""
    import textwrap
    import types

    if not isinstance(fn, (types.FunctionType, type)) or not exercise.forbidden_calls():
        return []
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return []
    import sys

    namespace = fn.__globals__ if isinstance(fn, types.FunctionType) else vars(sys.modules.get(fn.__module__, types))
    aliases = {}
    for name, value in namespace.items():
        if isinstance(value, types.ModuleType):
            aliases[name] = value.__name__
        elif callable(value) and getattr(value, "__module__", None) and getattr(value, "__name__", None):
            aliases[name] = f"{value.__module__}.{value.__name__}"
    aliases.pop(fn.__name__, None)
    return forbidden_in_source(source, fn.__name__, exercise, aliases)


def evaluate(
    exercise: Exercise,
    cases: Sequence[Case],
    outcome_of: Callable[[int, Case], dict | None],
    points: float = 1.0,
    time_limit: float | None = None,
    input_device: str = "cpu",
) -> CheckResult:
    """Judge the outcomes case by case, in order; the first failure decides the message."""
    name = exercise.name
    total = len(cases)
    for index, case in enumerate(cases):
        # The reference runs first, so torch's one-time warm-up is not charged to the student.
        expected = calling.sanitize(exercise.runner(exercise.reference)(*calling.clone(case.args),
                                                                         **calling.clone(case.kwargs)))
        outcome = outcome_of(index, case)
        if not isinstance(outcome, dict) or outcome.get("status") not in ("ok", "raised", "timeout", "missing", "forbidden"):
            outcome = {"status": "raised", "type": "GraderError",
                       "message": "no result came back for this case", "line": ""}
        status = outcome["status"]
        where = _case_header(index, total)
        if status == "missing":
            wanted = [str(n) for n in outcome.get("names") or []]
            named = (" named " + " or ".join(f"`{n}`" for n in wanted)) if wanted else " to check"
            return CheckResult(name, False, False,
                               f"⬜ {name}: not attempted (no function{named} was found).",
                               0.0, points, 0, total)
        calls = [str(c) for c in (outcome.get("calls") if status == "forbidden" else outcome.get("forbidden")) or []]
        if calls:
            how = ("is" if outcome.get("itself") else "names" if outcome.get("read") else "calls")
            message = (
                f"🚫 {name}: your function {how} {', '.join(calls)}, which this exercise forbids "
                f"{where}\n   why:      the exercise asks you to write {name} yourself; torch's built-in "
                "and labcode's own implementation of the same operation do not count.")
            return CheckResult(name, False, True, message, 0.0, points, index, total)
        if status == "raised" and outcome.get("not_implemented") and outcome.get("in_helper"):
            return CheckResult(
                name, False, True,
                f"❌ {name}: your function calls {outcome['in_helper']}(), which is not written yet "
                f"(it raised NotImplementedError) {where}\n   at:       {outcome.get('line', '')}",
                0.0, points, index, total)
        if status == "raised" and outcome.get("not_implemented") and index == 0:
            return CheckResult(
                name, False, False,
                f"⬜ {name}: not attempted yet. Replace `raise NotImplementedError` with "
                "your code, run that cell, then run this one again.",
                0.0, points, 0, total)
        if status == "timeout":
            limit = f"{time_limit:g} s" if time_limit is not None else "the time limit"
            message = (
                f"⏱️ {name}: stopped after {limit} (the time limit for this check) {where}\n"
                f"   input:    {describe_input(exercise, case)}\n"
                "   hint:     look for a loop that never ends, or work that grows too fast; "
                f"check.{name}(fn, time_limit=60) allows more time."
            )
            return CheckResult(name, False, True, message, 0.0, points, index, total)
        if status == "raised":
            line = f"\n   at:       {outcome['line']}" if outcome.get("line") else ""
            message = (
                f"❌ {name}: your function raised {outcome.get('type', 'an error')}: "
                f"{_first_lines(outcome.get('message', ''))} {where}\n"
                f"   input:    {describe_input(exercise, case)}{line}"
            )
            return CheckResult(name, False, True, message, 0.0, points, index, total)
        got = outcome.get("value")
        problem = compare(exercise, expected, got, input_device)
        mutated = outcome.get("mutated") or []
        if problem is None and not mutated:
            continue
        lines = [f"❌ {name}: " + (
            f"changed its input {', '.join(map(str, mutated))} in place" if mutated and problem is None
            else "wrong answer") + f" {where}",
            f"   input:    {describe_input(exercise, case)}"]
        if problem is not None:
            if exercise.explanation:  # a question: the answer stays hidden
                lines += [f"   got:      {show(got)}", f"   problem:  {_hidden(exercise, problem)}"]
            else:
                lines += [f"   expected: {show(expected)}", f"   got:      {show(got)}",
                          f"   problem:  {problem}"]
            hint = find_hint(exercise, case, got, input_device, expected)
            if hint:
                lines.append(f"   hint:     {hint}")
        if mutated:
            lines.append(
                f"   in place: your function changed {', '.join(map(str, mutated))}; callers keep "
                "using their tensors, so work on new ones (y = x * g, not x *= g; "
                "relu(x), not x.relu_()).")
        return CheckResult(name, False, True, "\n".join(lines), 0.0, points, index, total)
    why = "\n   why:      " + exercise.explanation.replace("\n", "\n             ") if exercise.explanation else ""
    return CheckResult(name, True, True, f"✅ {name}: passed {total} case{'' if total == 1 else 's'}{why}",
                       points, points, total, total)


def _hidden(exercise: Exercise, problem: str) -> str:
    """The problem in words that do not give a question's answer away."""
    if problem.startswith(("wrong type", "got NaN", "not one of")):
        return problem
    return "that is not the answer; think it through again (the hint, if any, says what your answer missed)"


def _case_header(index: int, total: int) -> str:
    before = f"; the {index} before it passed" if index else ""
    return f"(case {index + 1} of {total}{before})"


def _first_lines(text: str, limit: int = 3) -> str:
    lines = text.strip().splitlines() or [""]
    shown = "\n             ".join(lines[:limit])
    return shown + (" ..." if len(lines) > limit else "")


# ---------------------------------------------------------------------------------------
# Comparing answers


def rel_error(expected: torch.Tensor, got: torch.Tensor) -> float:
    """max|a - b| / max(1e-8, max(|a| + |b|)), in float64."""
    a, b = expected.double(), got.double()
    if a.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / max(1e-8, float((a.abs() + b.abs()).max())))


def _as_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if isinstance(value, dict) and value.get(calling.OPAQUE_KEY, "").startswith("numpy.int"):
        return value.get("item")
    return None


def compare(exercise: Exercise, expected: Any, got: Any, input_device: str = "cpu") -> str | None:
    """None when `got` is right; otherwise what is wrong with it, in one sentence."""
    kind = exercise.kind
    if kind == "int":
        value = _as_int(got)
        if value is None:
            return _wrong_type(got, "a Python int")
        return None if value == expected else f"expected {expected}, got {value}"
    if kind == "ints":
        if not isinstance(got, (tuple, list)):
            return _wrong_type(got, f"a tuple of {len(expected)} ints")
        values = [_as_int(v) for v in got]
        if len(values) != len(expected):
            return f"expected {len(expected)} values, got {len(values)}"
        if any(v is None for v in values):
            return _wrong_type(got, f"a tuple of {len(expected)} ints")
        return None if tuple(values) == tuple(expected) else "the values differ"
    if kind == "number":
        value = _as_number(got)
        if value is None:
            return _wrong_type(got, "a number (a Python float)")
        if math.isnan(value):
            return "got NaN (not a number)"
        error = abs(value - expected) / max(1e-8, abs(value) + abs(expected))
        return None if error <= (exercise.tolerance or NUMBER_TOLERANCE) else (
            f"expected {expected:.6g}, got {value:.6g}")
    if kind == "choice":
        return _compare_choice(exercise, expected, got)
    if kind == "shapes":
        if not isinstance(got, (list, tuple)):
            return _wrong_type(got, "a list of (C, H, W) tuples")
        if len(got) != len(expected):
            return f"expected {len(expected)} shapes, one per layer, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            if not isinstance(g, (list, tuple)) or any(_as_int(v) is None for v in g):
                return f"item {i} should be a tuple of ints like {tuple(e)}, got {show(g)}"
            if tuple(_as_int(v) for v in g) != tuple(e):
                return f"the first wrong shape is item {i} (layer {i}): expected {tuple(e)}, got {tuple(g)}"
        return None
    return _compare_tensor(exercise, expected, got, input_device)


def choice_set(value: Any) -> frozenset | None:
    """A (sanitized) answer as a set of options: 'b ' -> {'B'}, [5, 2] -> {2, 5}; None if it is not one."""
    def one(item: Any) -> Any:
        if isinstance(item, str) and item.strip():
            return item.strip().upper()
        return _as_int(item)
    if isinstance(value, (list, tuple)):
        items = [one(v) for v in value]
        return None if not items or any(v is None for v in items) else frozenset(items)
    item = one(value)
    return None if item is None else frozenset([item])


def _compare_choice(exercise: Exercise, expected: Any, got: Any) -> str | None:
    options = [o.upper() if isinstance(o, str) else o for o in exercise.options]
    shown = ", ".join(map(repr, exercise.options))
    answer = choice_set(got)
    if answer is None:
        return _wrong_type(got, f"one of {shown}, or a set of them")
    outside = sorted((a for a in answer if a not in options), key=repr)
    if outside:
        return f"not one of the options: {', '.join(map(repr, outside))}; the options are {shown}"
    return None if answer == choice_set(expected) else "not the right choice"


def _compare_tensor(exercise: Exercise, expected: Any, got: Any, input_device: str) -> str | None:
    if not (isinstance(got, dict) and calling.TENSOR_KEY in got):
        return _wrong_type(got, "a torch.Tensor")
    e, g = expected[calling.TENSOR_KEY], got[calling.TENSOR_KEY]
    if g.shape != e.shape:
        return f"wrong shape: expected {tuple(e.shape)}, got {tuple(g.shape)}"
    if g.dtype != e.dtype:
        return (f"wrong dtype: expected {_dtype(e.dtype)} (the input's), got {_dtype(g.dtype)}; "
                "make new tensors with dtype=x.dtype (torch.zeros(..., dtype=x.dtype)) or x.new_zeros(...)")
    if torch.device(got["device"]) != torch.device(input_device):
        return (f"wrong device: the inputs were on {input_device}, the output is on {got['device']}; "
                "make new tensors with device=x.device")
    bad = ~torch.isfinite(g) & torch.isfinite(e)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        return f"the output holds NaN or inf (first at index {list(index)}), where the answer is finite"
    error = rel_error(e, g)
    limit = exercise.tolerance or TOLERANCE.get(e.dtype, 1e-4)
    if error <= limit:
        return None
    diff = (e.double() - g.double()).abs()
    index = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
    return (f"relative error {error:.2g} (must stay below {limit:g}); largest difference at "
            f"index {list(index)}: expected {float(e[index]):.5g}, got {float(g[index]):.5g}")


def _as_number(value: Any) -> float | None:
    if type(value) in (int, float):
        return float(value)
    if isinstance(value, dict) and calling.TENSOR_KEY in value and value[calling.TENSOR_KEY].numel() == 1:
        return float(value[calling.TENSOR_KEY].reshape(()).double())
    if isinstance(value, dict) and str(value.get(calling.OPAQUE_KEY, "")).startswith(("numpy.float", "numpy.int")):
        return float(value["item"])
    return None


def _wrong_type(got: Any, wanted: str) -> str:
    advice = ""
    if isinstance(got, dict) and calling.TENSOR_KEY in got and "int" in wanted:
        advice = "; turn a one-number tensor into an int with int(t) or t.item()"
    elif type(got) is float and "int" in wanted:
        advice = "; use // for whole-number division, or int(...)"
    elif got is None:
        advice = "; did you forget `return`?"
    return f"wrong type: expected {wanted}, got {_short_type(got)}{advice}"


def _short_type(value: Any) -> str:
    if isinstance(value, dict) and calling.TENSOR_KEY in value:
        return "a tensor"
    if isinstance(value, dict) and calling.OPAQUE_KEY in value:
        return f"a {value[calling.OPAQUE_KEY]}"
    if value is None:
        return "None"
    return f"{show(value)} (a {type(value).__name__})"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def show(value: Any, limit: int = 160) -> str:
    """A short, readable description of a (sanitized) value."""
    if isinstance(value, dict) and calling.TENSOR_KEY in value:
        t = value[calling.TENSOR_KEY]
        device = "" if value.get("device", "cpu") == "cpu" else f" on {value['device']}"
        text = f"tensor of shape {tuple(t.shape)}, {_dtype(t.dtype)}{device}"
        if 0 < t.numel() <= 6:
            text += f", values {[round(float(v), 5) for v in t.flatten()]}"
        return text
    if isinstance(value, dict) and calling.OPAQUE_KEY in value:
        return f"{value[calling.OPAQUE_KEY]} {value.get('repr', '')}".strip()
    if isinstance(value, torch.Tensor):
        return show(calling.sanitize(value))
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def describe_input(exercise: Exercise, case: Case) -> str:
    """'x: tensor of shape (1, 3, 5, 5), float32, stride=2, padding='same''"""
    parts = []
    names = list(exercise.arg_names)
    for i, value in enumerate(case.args):
        label = names[i] if i < len(names) else f"arg{i + 1}"
        parts.append(f"{label}={_describe_value(value)}")
    parts += [f"{k}={_describe_value(v)}" for k, v in case.kwargs.items()]
    return ", ".join(parts) or "(none: the function takes no arguments)"


def _describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} ({_dtype(value.dtype)})"
    if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
        items = [f"'{k}': {tuple(v.shape)}" for k, v in value.items()]
        more = f", ... ({len(items)} tensors)" if len(items) > 4 else ""
        return "{" + ", ".join(items[:4]) + more + "}"
    return show(value, limit=300)


def find_hint(exercise: Exercise, case: Case, got: Any, input_device: str = "cpu",
              expected: Any = None) -> str | None:
    """The hint of the known mistake whose output equals the student's output on this case.

    A mistake whose output here equals the right answer says nothing about the student's
    error and is skipped. When several mistakes give the student's output, their hints
    are shown together, as alternatives: the case cannot tell them apart.
    """
    hints: list[str] = []
    for mistake in exercise.mistakes:
        try:
            wrong = calling.sanitize(exercise.runner(mistake.fn)(*calling.clone(case.args),
                                                                 **calling.clone(case.kwargs)))
        except Exception:
            continue
        if expected is not None and compare(exercise, expected, wrong, "cpu") is None and (
                _device_of(wrong) == _device_of(expected)):
            continue
        if compare(exercise, wrong, got, input_device) is None and mistake.hint not in hints:
            hints.append(mistake.hint)
    if len(hints) > 1:
        return "one of these (this case cannot tell them apart): " + "; or ".join(hints)
    return hints[0] if hints else None


def _device_of(value: Any) -> str:
    return value.get("device", "cpu") if isinstance(value, dict) and calling.TENSOR_KEY in value else "cpu"
