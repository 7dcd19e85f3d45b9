"""Exercise checks: a student writes a function, the cell under it checks it.

In a chapter notebook
---------------------
    from labcode import checks as check

    def conv_output_size(n, k, stride=1, padding=0, dilation=1):
        \"\"\"Output size along one axis.\"\"\"
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    check.conv_output_size(conv_output_size)      # the check cell, right under the exercise

A check calls the student's function on many inputs (fixed seeds: the same inputs every
run), smallest first, compares each answer with `labcode.checks.answers`, and prints one line:

    ✅ conv_output_size: passed 200 cases

or, at the first wrong answer, the input, the expected and the received answer, what is
wrong with it and, when the answer equals a known mistake, a hint naming it (true
convolution instead of cross-correlation, 'same' padding taken as k - 1 on each side, an
output off by one, attention without 1/sqrt(d), patches in the wrong order, ...). A stub
that still raises NotImplementedError gets "not attempted yet". Code that raises, returns
the wrong type, shape, dtype or device, returns NaN, changes its input in place, or runs
past the time limit gets its own message, never a traceback from labcode. A check does
not raise, so a student's notebook keeps running in Colab, except in strict mode
(`check.set_strict(True)` or LABCODE_STRICT=1 in the environment), where a check that
does not pass raises `check.CheckFailed` (an AssertionError) after its message: CI runs
the solution notebooks that way. The exercise notebooks' check cells are nbgrader test
cells written `assert check.NAME(fn).passed`, so they fail without strict mode too.

No borrowed answers: each exercise declares what it forbids (torch's built-in of the same
operation, labcode's own implementation, and always the answer key). A function that is
one of them, that names one in its code, or that calls one while it is checked (a profile
hook watches the calls) is rejected with a message saying so.

Every check has the same keyword arguments and returns a `CheckResult`:

    check.NAME(fn, *, time_limit=None, points=1, verbose=True)            numbers and shapes
    check.NAME(fn, *, time_limit=None, device=None, points=1, verbose=True)   tensor answers

    time_limit  seconds for the whole check (default: the exercise's, 5 to 30 s)
    device      run the student's function on this device ("cuda"); the answer must come
                back on it. Default: CPU tensors.
    points      what a pass is worth (CheckResult.points is 0 or this; default: the
                exercise's declaration, 1 for every exercise today)
    verbose     print the message (default True)

    CheckResult(name, passed, attempted, message, points, max_points, cases_passed, cases_total)

Numbers are compared by relative error, max|a - b| / max(1e-8, max(|a| + |b|)), at most
1e-4 for float32 (1e-5 for float64); ints and shapes exactly; tensors must also match in
shape, dtype and device.

The checks
----------
Each chapter's checks are declared in its own module: chapter 1 (convolution, pooling,
parameter counts) in labcode/checks/ch1.py, chapter 2 (AlexNet, EfficientNetV2) in ch2.py,
chapter 3 (the Vision Transformer) in ch3.py. `help(check.NAME)` gives a check's contract,
`check.EXERCISES[NAME].signature` the student's function in one line, and
`sorted(check.CHECKS)` every name.

Writing exercise notebooks (for chapter authors)
------------------------------------------------
Write the solution notebook; `labcode assign` makes the student version from it.

1. The exercise cell holds the function with its def line and docstring, then the answer
   between nbgrader's markers, each alone on its line:
       ### BEGIN SOLUTION
       ...
       ### END SOLUTION
   `labcode assign` replaces the marked lines with `raise NotImplementedError("Your code here")`
   at the marker's indentation, as nbgrader's `generate_assignment` does (otter-grader
   is not supported). The cell carries nbgrader's metadata: a solution cell.
2. The check cell sits right under it, `assert check.NAME(function_name).passed`: an
   nbgrader test cell (locked, graded, its points those of the declaration) whose
   grade_id is `check_NAME`; every other cell is locked (tests/test_nbgrader.py).
3. Points: put {"labcode": {"exercise": "NAME", "points": 2}} in the metadata of the
   exercise cell or of the check cell (default: the points of the exercise's
   declaration, 1 unless it says otherwise). "exercise" is the check's NAME;
   "function" may name the student's function when it differs from the def in the
   exercise cell (or from the argument of check.NAME(...) in a check cell). A notebook
   without such metadata is graded from its `check.NAME(function)` calls, each worth the
   points of its declaration.
4. Commit the student notebook made by `labcode assign` next to the solution; a test can
   call `labcode.assign.assert_up_to_date(source, student)` to catch stale ones.

`labcode grade` runs each submission, then calls the submitted functions again from the
grader's own copy of these checks (see labcode.grading).

Adding an exercise touches exactly these files
----------------------------------------------
1. labcode/checks/answers.py: the reference solution, a function named like the exercise.
2. labcode/checks/chN.py (N, the chapter): one declaration, which is also the check,

       my_exercise = declare(
           "my_exercise",
           signature="my_exercise(x, k) -> tensor",
           doc="Check fn(x, k) -> tensor: ... (the contract help(check.my_exercise) shows)",
           reference=answers.my_exercise,
           make_cases=_my_exercise_cases,      # deterministic: seeded("my_exercise")
           kind="tensor",                      # one of core.KINDS
           points=1, time_limit=5.0,
           mistakes=[Mistake(wrong_function, "the hint shown when an answer equals it")],
       )

3. chapters/chN_*/exercises_solutions.ipynb: the exercise cell and the check cell
   `check.my_exercise(my_exercise)` under it, then `labcode assign` for the student copy
   (chapters/chN_*/exercises.ipynb).
4. tests/fixtures/exercises/wrong_answers.py: at least two wrong answers, written apart
   from the mistakes above, with words the check's message must contain.
tests/test_exercise_declarations.py fails while a solution notebook calls a check that
has no declaration, or a declaration has no exercise in any solution notebook.
"""
from __future__ import annotations

from labcode.checks import ch1, ch2, ch3  # noqa: F401  (each declaration registers its check)
from labcode.checks.core import (CHECKS, EXERCISES, CheckFailed, CheckResult, Exercise, Mistake, declare, is_strict,
                                 run_check, set_strict)


def __getattr__(name: str):
    """check.NAME: the check declared under NAME in ch1, ch2 or ch3."""
    if name in CHECKS:
        return CHECKS[name]
    raise AttributeError(f"labcode.checks has no check named {name!r}; the checks are: {', '.join(sorted(CHECKS))}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(CHECKS))


__all__ = ["CHECKS", "EXERCISES", "CheckFailed", "CheckResult", "Exercise", "Mistake", "declare", "is_strict",
           "run_check", "set_strict", *CHECKS]
