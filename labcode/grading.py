"""Grade submitted notebooks: run each one, then check its functions from the grader's side.

WARNING: grading runs the students' code, with your user's rights, on your machine.
When submissions are untrusted, run `labcode grade` inside a container or a virtual
machine that has no secrets, no network and nothing you would miss.

How a submission is graded
--------------------------
1. The notebook runs top to bottom in a fresh Python kernel (nbclient, allow_errors=True:
   a cell that raises does not stop the rest), in the submission's folder, within a
   per-notebook time limit (kernel start not counted); a cell that runs past it is
   interrupted and later cells are skipped. The kernel is this Python's ipykernel
   (`sys.executable -m ipykernel_launcher`), so no kernelspec needs installing.
2. In the same kernel, the grader loads its own copy of `labcode/checks/calling.py`
   straight from the file (not through the kernel's imports, which the notebook may have
   patched), and calls each exercise's function, found by name, on the grader's inputs.
   Only the outputs (tensors, numbers, strings) come back, in a file read with
   torch.load(weights_only=True), so nothing from the kernel runs in the grader.
3. The grader compares those outputs with its own answer key (labcode.checks.answers,
   through labcode.checks.core.evaluate).
   A notebook that patches labcode.checks to print "passed" gains nothing: the checks
   it patched never decide anything. Only correct outputs earn points.

The exercises and their points come from the source (solution) notebook when given
(`--source`, recommended: a student can edit their own notebook's metadata), else from
each submission. See labcode.checks for the metadata convention.

Every submission gets a row, whatever happens: status is "ok", "timeout" (a cell ran
past the limit; functions defined before it are still graded), "crashed" (the kernel
died), "invalid" (not a notebook), "empty" or "error"; `reason` says more. The CSV is
written atomically; the same submissions give the same grades (fixed seeds).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import nbformat
import torch

from labcode.assign import BEGIN_SOLUTION, write_atomic
from labcode.checks import calling
from labcode.checks.core import EXERCISES, CheckResult, evaluate

DEFAULT_TIMEOUT = 120.0
GRADER_MARGIN = 60.0  # seconds on top of the checks' own limits for the grading step
_CHECK_CALL = re.compile(r"\bcheck\.(\w+)\(\s*([A-Za-z_]\w*)")
# The answer key, labcode.checks.answers (labcode.references before it moved), reached by
# its full name, by `from labcode.checks import answers`, or through `check.answers`.
_REFERENCE_USE = re.compile(
    r"labcode\.references|from\s+labcode\s+import[^\n]*\breferences\b"
    r"|labcode\.checks\.answers|from\s+labcode\.checks\s+import[^\n]*\banswers\b|\bchecks?\.answers\b")
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


@dataclass(frozen=True)
class Slot:
    """One graded exercise of a notebook: the check's name, the student's function, its points."""

    exercise: str
    function: str
    points: float = 1.0
    label: str = ""

    @property
    def column(self) -> str:
        return self.label or self.exercise


@dataclass
class Grade:
    """The grade of one submission: a CSV row and a feedback file."""

    file: str
    slots: list[Slot]
    results: list[CheckResult] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""

    @property
    def total(self) -> float:
        return sum(r.points for r in self.results)

    @property
    def max_total(self) -> float:
        return sum(s.points for s in self.slots)

    def scores(self) -> dict[str, float]:
        earned = {r.name: r.points for r in self.results}
        return {s.column: earned.get(s.column, 0.0) for s in self.slots}

    def feedback(self) -> dict:
        return {
            "file": self.file, "status": self.status, "reason": self.reason,
            "total": self.total, "max_total": self.max_total,
            "exercises": [
                {"column": s.column, "exercise": s.exercise, "function": s.function, **r.to_dict()}
                for s, r in zip(self.slots, self.results)
            ],
        }


# ---------------------------------------------------------------------------------------
# Finding the exercises of a notebook


def find_exercises(nb: nbformat.NotebookNode) -> list[Slot]:
    """The exercises a notebook declares: cell metadata first, else its check.NAME(function) calls.

    Metadata {"labcode": {"exercise": NAME, "points": P, "function": F}} on a code cell;
    P defaults to the points of NAME's declaration (labcode.checks.declare); F defaults to
    the function whose body holds '### BEGIN SOLUTION' in that cell, else the argument of
    check.NAME(...) in it, else its first def, else NAME.
    """
    slots: list[Slot] = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("labcode")
        if cell.cell_type != "code" or not isinstance(meta, dict) or "exercise" not in meta:
            continue
        name = str(meta["exercise"])
        function = meta.get("function") or _function_in(cell.source, name) or name
        declared = EXERCISES[name].points if name in EXERCISES else 1  # an unknown name fails below
        points = meta.get("points", declared)
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
            raise ValueError(f"cell {index}: labcode points must be a number >= 0, got {points!r}")
        slots.append(Slot(name, str(function), float(points)))
    if not slots:
        for cell in nb.cells:
            if cell.cell_type == "code":
                slots += [Slot(name, function, float(EXERCISES[name].points))
                          for name, function in _CHECK_CALL.findall(cell.source) if name in EXERCISES]
    return _labelled(_unique(slots))


def _function_in(source: str, exercise: str) -> str | None:
    marker = source.find(BEGIN_SOLUTION)
    if marker >= 0:
        defs = _DEF.findall(source[:marker])
        if defs:
            return defs[-1]
    calls = [f for n, f in _CHECK_CALL.findall(source) if n == exercise]
    if calls:
        return calls[0]
    defs = _DEF.findall(source)
    return defs[0] if defs else None


def _unique(slots: list[Slot]) -> list[Slot]:
    seen, out = set(), []
    for slot in slots:
        if (slot.exercise, slot.function) not in seen:
            seen.add((slot.exercise, slot.function))
            out.append(slot)
    for slot in out:
        if slot.exercise not in EXERCISES:
            raise ValueError(f"unknown exercise {slot.exercise!r}; the checks are: {', '.join(sorted(EXERCISES))}")
    return out


def _labelled(slots: list[Slot]) -> list[Slot]:
    counts: dict[str, int] = {}
    for slot in slots:
        counts[slot.exercise] = counts.get(slot.exercise, 0) + 1
    return [Slot(s.exercise, s.function, s.points, s.exercise if counts[s.exercise] == 1 else f"{s.exercise}:{s.function}")
            for s in slots]


# ---------------------------------------------------------------------------------------
# Running one submission


def _kernel_manager(kernel_name: str | None):
    """A kernel manager for `kernel_name`, or for this very Python (the default, works in any venv)."""
    # nbclient needs the asynchronous manager: a blocking client would freeze its event
    # loop and no time limit would ever fire.
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    if kernel_name:
        return AsyncKernelManager(kernel_name=kernel_name)

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="Python (labcode grader)", language="python")

    return AsyncKernelManager(kernel_name="labcode-grader", kernel_spec_manager=ThisPython())


def grade_notebook(
    path: str | Path,
    slots: Sequence[Slot] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    kernel_name: str | None = None,
) -> Grade:
    """Run and grade one submitted notebook. Never raises for a bad submission."""
    path = Path(path)
    grade = Grade(str(path), list(slots or []))
    try:
        if path.stat().st_size == 0:
            return _finish(grade, "empty", "the file is empty")
        nb = nbformat.read(str(path), as_version=4)
    except Exception as error:  # whatever makes it unreadable, the batch goes on
        return _finish(grade, "invalid", f"not a readable notebook ({type(error).__name__}: {_short(error)})")
    if slots is None:
        try:
            grade.slots = find_exercises(nb)
        except ValueError as error:
            return _finish(grade, "invalid", str(error))
    if not any(cell.cell_type == "code" and cell.source.strip() for cell in nb.cells):
        return _finish(grade, "empty", "the notebook has no code")
    if not grade.slots:
        return _finish(grade, "ok", "no exercises found")
    workdir = Path(tempfile.mkdtemp(prefix="labcode-grade-"))
    try:
        _run_and_check(grade, nb, path, workdir, timeout, kernel_name)
    except Exception as error:  # a kernel that cannot start, a broken environment
        _finish(grade, "error", f"the grader could not run it ({type(error).__name__}: {_short(error)})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return grade


def _run_and_check(grade: Grade, nb, path: Path, workdir: Path, timeout: float, kernel_name: str | None) -> None:
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    jobs, cases = {}, {}
    for slot in grade.slots:
        exercise = EXERCISES[slot.exercise]
        cases[slot.column] = exercise.make_cases()
        jobs[slot.column] = {"function": slot.function, "arg_names": list(exercise.arg_names),
                             "seconds": exercise.time_limit,
                             "cases": [(c.args, c.kwargs) for c in cases[slot.column]]}
    cases_path, results_path = workdir / "cases.pt", workdir / "results.pt"
    torch.save(jobs, cases_path)
    runner = workdir / "_labcode_grader_calling.py"
    shutil.copyfile(calling.__file__, runner)

    client = NotebookClient(nb, timeout=int(timeout), allow_errors=True, km=_kernel_manager(kernel_name),
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.reset_execution_trackers()
    status, reason, errors = "ok", "", 0
    # cleanup_kc: shut the kernel down on the way out; its own log lines (not the notebook's
    # output, which comes through Jupyter's messages) would only clutter the grader's terminal.
    with client.setup_kernel(cleanup_kc=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        deadline = time.monotonic() + timeout  # the kernel's start is not the student's time
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                status, reason = "timeout", f"the notebook ran past its {timeout:g} s limit before cell {index}"
                break
            client.timeout = max(1, int(math.ceil(left)))
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                status = "timeout"
                reason = (f"cell {index} was still running at the {timeout:g} s limit and was stopped; "
                          "later cells did not run")
                run_sync(client.km.interrupt_kernel)()
                break
            except DeadKernelError:
                _finish(grade, "crashed", f"the kernel died in cell {index} (a crash or out of memory)")
                return
            errors += any(out.get("output_type") == "error" for out in cell.get("outputs", []))
        seconds = sum(job["seconds"] for job in jobs.values()) + GRADER_MARGIN
        grader_cell = nbformat.v4.new_code_cell(_grader_source(runner, cases_path, results_path))
        nb.cells.append(grader_cell)  # nbclient tracks cells by index
        client.timeout = int(seconds)
        try:
            client.execute_cell(grader_cell, len(nb.cells) - 1, store_history=False)
        except (CellTimeoutError, DeadKernelError) as error:
            what = "timed out" if isinstance(error, CellTimeoutError) else "lost its kernel"
            _finish(grade, "timeout" if status == "timeout" else "crashed",
                    (reason + "; " if reason else "") + f"the grading step {what}")
            return
    try:
        outcomes = torch.load(results_path, weights_only=True)
    except Exception as error:  # the kernel never wrote them, or wrote something else
        _finish(grade, "error", (reason + "; " if reason else "")
                + f"no results came back from the kernel ({type(error).__name__})")
        return
    if errors and status == "ok":
        reason = f"{errors} cell(s) raised an error"
    for note in review_notes(nb):
        reason = (reason + "; " if reason else "") + note
    grade.status, grade.reason = status, reason
    for slot in grade.slots:
        got = outcomes.get(slot.column) if isinstance(outcomes, dict) else None
        got = got if isinstance(got, list) else []
        exercise = EXERCISES[slot.exercise]
        result = evaluate(exercise, cases[slot.column],
                          lambda i, case, got=got: got[i] if i < len(got) and isinstance(got[i], dict) else None,
                          slot.points, exercise.time_limit)
        result.name = slot.column
        grade.results.append(result)


def review_notes(nb: nbformat.NotebookNode) -> list[str]:
    """Things in a submission that a human should look at (they do not change the points)."""
    notes = []
    if any(_REFERENCE_USE.search(cell.source) for cell in nb.cells if cell.cell_type == "code"):
        notes.append("the notebook uses labcode's reference solutions: review by hand")
    return notes


def _grader_source(runner: Path, cases_path: Path, results_path: Path) -> str:
    return (
        "def __labcode_grade():\n"
        "    import importlib.util\n"
        f"    spec = importlib.util.spec_from_file_location('_labcode_grader_calling', {str(runner)!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        f"    module.grade_in_kernel(globals(), {str(cases_path)!r}, {str(results_path)!r})\n"
        "__labcode_grade()\n"
    )


def _finish(grade: Grade, status: str, reason: str) -> Grade:
    grade.status, grade.reason = status, reason
    grade.results = [
        CheckResult(s.column, False, False, f"⬜ {s.column}: not graded ({reason}).", 0.0, s.points)
        for s in grade.slots
    ]
    return grade


def _short(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


# ---------------------------------------------------------------------------------------
# A batch


def grade_all(
    submissions: Iterable[str | Path],
    out_csv: str | Path,
    source: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    feedback_dir: str | Path | None = None,
    kernel_name: str | None = None,
    progress: bool = False,
) -> list[Grade]:
    """Grade every submission, write the CSV (and one JSON feedback file each); return the grades."""
    slots = find_exercises(nbformat.read(str(source), as_version=4)) if source else None
    grades = []
    for submission in submissions:
        grade = grade_notebook(submission, slots, timeout, kernel_name)
        grades.append(grade)
        if progress:
            print(f"{grade.file}: {grade.total:g}/{grade.max_total:g} {grade.status}"
                  + (f" ({grade.reason})" if grade.reason else ""), flush=True)
    write_csv(grades, out_csv)
    if feedback_dir is not None:
        write_feedback(grades, feedback_dir)
    return grades


def write_csv(grades: Sequence[Grade], out_csv: str | Path) -> None:
    """One row per submission: file, points per exercise, total, max_total, status, reason."""
    columns: list[str] = []
    for grade in grades:
        columns += [s.column for s in grade.slots if s.column not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", *columns, "total", "max_total", "status", "reason"])
    for grade in grades:
        scores = grade.scores()
        writer.writerow([grade.file, *(_number(scores.get(c, 0.0)) for c in columns),
                         _number(grade.total), _number(grade.max_total), grade.status, grade.reason])
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_csv, buffer.getvalue())


def write_feedback(grades: Sequence[Grade], feedback_dir: str | Path) -> list[Path]:
    """A JSON file per submission (named after it) with every check's message."""
    folder = Path(feedback_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    for grade in grades:
        stem = Path(grade.file).stem or "submission"
        name, n = f"{stem}.json", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.json"
        used.add(name)
        write_atomic(folder / name, json.dumps(grade.feedback(), indent=1, ensure_ascii=False) + "\n")
        written.append(folder / name)
    return written


def _number(value: float) -> str:
    return f"{value:g}"
