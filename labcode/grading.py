"""Grade submitted notebooks: each runs in its own sandbox; every decision is taken outside it.

How a submission is graded
--------------------------
1. The grader reads the exercises and their points from the source (solution) notebook
   (`--source`, required: a student can edit their own notebook's metadata) and draws the
   inputs of every check once per batch, with a seed the submissions cannot know.
2. Each submission runs in a bubblewrap sandbox (labcode.sandbox): the system read-only,
   an empty private home and /tmp, a read-only copy of that notebook only, no network, its
   own PID namespace (nothing it starts outlives it), limits on memory, time and output.
   It cannot see the source notebook, the other submissions, the grader's files or the
   grades. The notebook runs top to bottom in a fresh kernel (a cell that raises does not
   stop the rest) within the time limit; then the grader's inputs are handed in and the
   student's functions, found by name (or as passed to `check.NAME(...)` in the notebook),
   run on them. Only their outputs come back, as data (torch.load(weights_only=True)).
3. The grader compares the outputs with its own answer key (labcode.checks.answers,
   through labcode.checks.core.evaluate) and gives the points. It never runs student code.
   A function that is, names or calls what its exercise forbids (torch's built-in of the
   operation, labcode's own implementation, the answer key) gets 0 and the row is flagged.

Without bubblewrap, `labcode grade` refuses unless told `--no-sandbox` (then every row
says NOT SANDBOXED).

Every submission gets a row, whatever happens: status is "ok", "timeout" (a cell ran past
the limit), "crashed" (the kernel died: an exit, a crash, out of memory), "invalid" (not a
notebook), "empty" or "error"; `reason` says more. After a timeout or a crash the cells
before the one that stopped still count: their functions are graded. The CSV is rewritten
atomically after every submission, so an interrupted batch keeps its rows, and `--resume`
grades only the submissions it does not hold yet. Cells starting with = + - @ are
escaped with a quote (spreadsheets would run them as formulas). `--jobs N` grades N
submissions at a time.
"""
from __future__ import annotations

import csv
import io
import json
import re
import secrets
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import nbformat
import torch

from labcode import sandbox
from labcode.assign import BEGIN_SOLUTION, write_atomic
from labcode.checks.core import (EXERCISES, Case, CheckResult, cases_for, evaluate, forbidden_in_source,
                                 imported_names)

DEFAULT_TIMEOUT = 120.0
GRADER_MARGIN = 60.0  # seconds on top of the checks' own limits for the grading step
KERNEL_START = 60.0  # seconds allowed for each kernel to start inside the sandbox
NOT_SANDBOXED = "NOT SANDBOXED (--no-sandbox): the notebook ran with the grader's rights"
_CHECK_CALL = re.compile(r"\bcheck\.(\w+)\(\s*([A-Za-z_]\w*)")
# The answer key, labcode.checks.answers (labcode.references before it moved), reached by
# its full name, by `from labcode.checks import answers`, or through `check.answers`.
_REFERENCE_USE = re.compile(
    r"labcode\.references|from\s+labcode\s+import[^\n]*\breferences\b"
    r"|labcode\.checks\.answers|from\s+labcode\.checks\s+import[^\n]*\banswers\b|\bchecks?\.answers\b")
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_TOP_LEVEL = re.compile(r"^(?:def|class)\s+([A-Za-z_]\w*)\s*[(:]", re.MULTILINE)


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
    check.NAME(...) in it, else its first def, else NAME. Without such metadata, a cell
    holding one check.NAME(F) call that is an nbgrader autograded test cell (metadata
    {"nbgrader": {"grade": true, "points": P}}) is worth nbgrader's P, so that both
    graders give the same points; any other check call is worth its declaration's.
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
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                calls = [(n, f) for n, f in _CHECK_CALL.findall(cell.source) if n in EXERCISES]
                points = _nbgrader_points(cell, index) if len(calls) == 1 else None
                slots += [Slot(name, function, float(EXERCISES[name].points if points is None else points))
                          for name, function in calls]
    return _labelled(_unique(slots))


def _nbgrader_points(cell, index: int) -> float | None:
    """The points of an nbgrader autograded test cell, None for any other cell."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if not isinstance(meta, dict) or not meta.get("grade") or "points" not in meta:
        return None
    points = meta["points"]
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        raise ValueError(f"cell {index}: nbgrader points must be a number >= 0, got {points!r}")
    return float(points)


def _function_in(source: str, exercise: str) -> str | None:
    marker = source.find(BEGIN_SOLUTION)
    if marker >= 0:
        # A class exercise (an nn.Module) has its first marker inside a method: take the class.
        defs = _TOP_LEVEL.findall(source[:marker]) or _DEF.findall(source[:marker])
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


@dataclass
class Setup:
    """What every submission of a batch shares: exercises, drawn inputs, limits, what to hide."""

    slots: list[Slot]
    cases: dict[str, list[Case]]
    timeout: float = DEFAULT_TIMEOUT
    sandboxed: bool = True
    hidden: tuple = ()
    memory: int = sandbox.MEMORY_LIMIT


def prepare(slots: Sequence[Slot], timeout: float = DEFAULT_TIMEOUT, seed: int | None = None,
            sandboxed: bool = True, hidden: Sequence[str | Path] = (), memory: int = sandbox.MEMORY_LIMIT) -> Setup:
    """Draw the inputs of every exercise with `seed` (default: a fresh secret one)."""
    seed = secrets.randbits(32) if seed is None else seed
    cases = {s.column: cases_for(EXERCISES[s.exercise], seed) for s in slots}
    return Setup(list(slots), cases, float(timeout), sandboxed, tuple(hidden), int(memory))


def grade_notebook(path: str | Path, setup: Setup) -> Grade:
    """Run and grade one submitted notebook in its sandbox. Never raises for a bad submission."""
    path = Path(path)
    grade = Grade(str(path), list(setup.slots))
    try:
        if path.stat().st_size == 0:
            return _finish(grade, "empty", "the file is empty", setup)
        nb = nbformat.read(str(path), as_version=4)
    except Exception as error:  # whatever makes it unreadable, the batch goes on
        return _finish(grade, "invalid", f"not a readable notebook ({type(error).__name__}: {_short(error)})", setup)
    if not any(cell.cell_type == "code" and cell.source.strip() for cell in nb.cells):
        return _finish(grade, "empty", "the notebook has no code", setup)
    if not grade.slots:
        return _finish(grade, "ok", "no exercises found", setup)
    workdir = Path(tempfile.mkdtemp(prefix="labcode-grade-"))
    try:
        _run_and_check(grade, nb, path, workdir, setup)
    except Exception as error:  # a sandbox that cannot start, a broken environment
        _finish(grade, "error", f"the grader could not run it ({type(error).__name__}: {_short(error)})", setup)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return grade


def _candidates(nb: nbformat.NotebookNode, slot: Slot) -> list[str]:
    """Function names to look for: those the notebook passes to check.NAME(...), then the source's."""
    passed = [f for cell in nb.cells if cell.cell_type == "code"
              for name, f in _CHECK_CALL.findall(cell.source) if name == slot.exercise]
    return list(dict.fromkeys([*passed, slot.function]))


def _run_and_check(grade: Grade, nb, path: Path, workdir: Path, setup: Setup) -> None:
    exercises = {}
    for slot in grade.slots:
        exercise = EXERCISES[slot.exercise]
        exercises[slot.column] = {
            "functions": _candidates(nb, slot), "arg_names": list(exercise.arg_names),
            "seconds": exercise.time_limit, "forbidden": [list(f) for f in exercise.forbidden_calls()],
            "module": exercise.kind == "module",
            "cases": [(c.args, c.kwargs) for c in setup.cases[slot.column]]}
    grading_seconds = sum(job["seconds"] for job in exercises.values()) + GRADER_MARGIN
    job = {"timeout": setup.timeout, "grading_seconds": grading_seconds, "exercises": exercises}
    buffer = io.BytesIO()
    torch.save(job, buffer)
    (workdir / "job").mkdir()
    shutil.copyfile(path, workdir / "job" / "submission.ipynb")
    argv = sandbox.command(workdir / "job", setup.hidden, setup.memory, setup.sandboxed)
    cwd = None
    if not setup.sandboxed:
        (workdir / "work").mkdir()
        cwd = str(workdir / "work")
    limit = 2 * (setup.timeout + grading_seconds + KERNEL_START) + sandbox.INTERRUPT_GRACE * 2
    finished = sandbox.run(argv, limit, stdin=buffer.getvalue(), cwd=cwd)
    reply = None
    if finished.data:
        try:
            reply = torch.load(io.BytesIO(finished.data), weights_only=True)
        except Exception:  # the notebook wrote something else down the pipe
            reply = None
    if not isinstance(reply, dict):
        if finished.over_limit:
            why = f"it sent back more than {sandbox.RESULT_LIMIT >> 20} MiB and was stopped"
        elif finished.timed_out:
            why = f"the sandbox ran past its {limit:g} s limit and was stopped"
        else:
            why = f"no results came back (exit code {finished.returncode}; {_short_text(finished.stderr)})"
        _finish(grade, "error", why, setup)
        return
    status = str(reply.get("status", "error"))
    reason = str(reply.get("reason", ""))
    errors = int(reply.get("errors", 0) or 0)
    if errors and status == "ok":
        reason = f"{errors} cell(s) raised an error"
    outcomes = reply.get("outcomes")
    if not isinstance(outcomes, dict):
        _finish(grade, status if status != "ok" else "error",
                (reason + "; " if reason else "") + str(reply.get("grading", "no outcomes came back")), setup)
        return
    notes = review_notes(nb)
    for slot in grade.slots:
        entry = outcomes.get(slot.column) if isinstance(outcomes.get(slot.column), dict) else {}
        got = entry.get("outcomes") if isinstance(entry.get("outcomes"), list) else []
        function = str(entry.get("function") or slot.function)
        exercise = EXERCISES[slot.exercise]
        read = [] if not got or got[0].get("status") in ("missing", "forbidden") else (
            forbidden_in_notebook(nb, function, exercise))
        if read:
            got = [{"status": "forbidden", "calls": read, "read": True}]
        result = evaluate(exercise, setup.cases[slot.column],
                          lambda i, case, got=got: got[i] if i < len(got) and isinstance(got[i], dict) else None,
                          slot.points, exercise.time_limit)
        result.name = slot.column
        if result.message.startswith("🚫"):
            notes.append(f"{slot.column} uses what its exercise forbids: 0 points")
        grade.results.append(result)
    for note in notes:
        reason = (reason + "; " if reason else "") + note
    if not setup.sandboxed:
        reason = NOT_SANDBOXED + ("; " + reason if reason else "")
    grade.status, grade.reason = status, reason


def forbidden_in_notebook(nb: nbformat.NotebookNode, function: str, exercise) -> list[str]:
    """What the code of `function` (its def in the notebook, read as text) names that `exercise` forbids."""
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    found: list[str] = []
    for cell in nb.cells:  # each cell alone too: one that does not parse must not hide the others
        if cell.cell_type == "code":
            found += [f for f in forbidden_in_source(_plain_python(cell.source), function, exercise,
                                                     _imports(source)) if f not in found]
    return found


def _plain_python(source: str) -> str:
    """Cell source without IPython's magics and shell escapes, so that ast can read it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _imports(source: str) -> dict[str, str]:
    import ast

    names: dict[str, str] = {}
    for line in _plain_python(source).splitlines():
        try:
            tree = ast.parse(line.strip())
        except SyntaxError:
            continue
        names.update(imported_names(tree))
    return names


_SUSPICIOUS = re.compile(r"/proc/|\bsys\.setprofile\b|\bsettrace\b|\bos\.write\(|\bctypes\b|\bgc\.get_objects\b")


def review_notes(nb: nbformat.NotebookNode) -> list[str]:
    """Things in a submission that a human should look at (they do not change the points)."""
    notes = []
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    if any(_REFERENCE_USE.search(text) for text in code):
        notes.append("the notebook uses labcode's reference solutions: review by hand")
    if any(_SUSPICIOUS.search(text) for text in code):
        notes.append("the notebook reaches into processes or the interpreter (/proc, settrace, ctypes, ...): "
                     "review by hand")
    return notes


def _finish(grade: Grade, status: str, reason: str, setup: Setup | None = None) -> Grade:
    if setup is not None and not setup.sandboxed:
        reason = NOT_SANDBOXED + "; " + reason
    grade.status, grade.reason = status, reason
    grade.results = [
        CheckResult(s.column, False, False, f"⬜ {s.column}: not graded ({reason}).", 0.0, s.points)
        for s in grade.slots
    ]
    return grade


def _short(error: BaseException, limit: int = 200) -> str:
    return _short_text(str(error), limit)


def _short_text(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "... " + text[-limit:]


# ---------------------------------------------------------------------------------------
# A batch


def grade_all(
    submissions: Iterable[str | Path],
    out_csv: str | Path,
    source: str | Path,
    timeout: float = DEFAULT_TIMEOUT,
    feedback_dir: str | Path | None = None,
    progress: bool = False,
    jobs: int = 1,
    resume: bool = False,
    sandboxed: bool = True,
    seed: int | None = None,
    memory: int = sandbox.MEMORY_LIMIT,
) -> list[Grade]:
    """Grade every submission into out_csv, rewritten after each one; return the grades made now.

    `source` (required) gives the exercises and points. `resume` keeps the rows out_csv
    already holds and grades only the other submissions. `jobs` grades that many at a time.
    `sandboxed=False` runs the notebooks with the grader's rights (no bubblewrap).
    """
    if source is None:
        raise ValueError("grading needs the source (solution) notebook, --source: it alone sets the exercises "
                         "and points (a submission's own metadata could give itself any points)")
    if sandboxed and sandbox.bwrap_path() is None:
        raise ValueError("bubblewrap (bwrap) is not installed, so submissions cannot be sandboxed: install it "
                         "(apt install bubblewrap), or pass --no-sandbox to accept running them with your rights")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    submissions = [Path(p) for p in submissions]
    slots = find_exercises(nbformat.read(str(source), as_version=4))
    hidden = [Path(source).parent, Path(out_csv).parent, *{p.parent for p in submissions}]
    if feedback_dir is not None:
        hidden.append(Path(feedback_dir))
    setup = prepare(slots, timeout, seed, sandboxed, hidden, memory)
    columns = [s.column for s in slots]
    kept = read_rows(out_csv) if resume else {}
    rows: dict[str, dict] = {k: v for k, v in kept.items() if k in {str(p) for p in submissions}}
    todo = [p for p in submissions if str(p) not in rows]
    lock = threading.Lock()
    grades: list[Grade] = []
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)

    def done(grade: Grade) -> None:
        with lock:
            grades.append(grade)
            rows[grade.file] = grade_row(grade)
            write_rows([rows[str(p)] for p in submissions if str(p) in rows], columns, out_csv)
            if feedback_dir is not None:
                write_feedback([grade], feedback_dir, names=_feedback_names(submissions))
            if progress:
                print(f"{grade.file}: {grade.total:g}/{grade.max_total:g} {grade.status}"
                      + (f" ({grade.reason})" if grade.reason else ""), flush=True)

    write_rows([rows[str(p)] for p in submissions if str(p) in rows], columns, out_csv)
    if jobs == 1:
        for path in todo:
            done(grade_notebook(path, setup))
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for grade in pool.map(lambda p: grade_notebook(p, setup), todo):
                done(grade)
    order = {str(p): i for i, p in enumerate(submissions)}
    return sorted(grades, key=lambda g: order[g.file])


def grade_row(grade: Grade) -> dict:
    scores = grade.scores()
    return {"file": grade.file, **{c: _number(v) for c, v in scores.items()}, "total": _number(grade.total),
            "max_total": _number(grade.max_total), "status": grade.status, "reason": grade.reason}


def read_rows(out_csv: str | Path) -> dict[str, dict]:
    """The rows an earlier (maybe interrupted) run wrote, by file name; none if the CSV is missing."""
    path = Path(out_csv)
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {_unescape(row["file"]): {k: _unescape(v or "") for k, v in row.items()} for row in rows if row.get("file")}


def write_rows(rows: Sequence[dict], columns: Sequence[str], out_csv: str | Path) -> None:
    """One row per submission: file, points per exercise, total, max_total, status, reason."""
    header = ["file", *columns, "total", "max_total", "status", "reason"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_escape(str(row.get(key, "0" if key in columns else ""))) for key in header])
    write_atomic(out_csv, buffer.getvalue())


def write_csv(grades: Sequence[Grade], out_csv: str | Path) -> None:
    """The CSV of these grades (columns in the order the slots first appear)."""
    columns: list[str] = []
    for grade in grades:
        columns += [s.column for s in grade.slots if s.column not in columns]
    write_rows([grade_row(g) for g in grades], columns, out_csv)


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _escape(text: str) -> str:
    """A leading ' on cells a spreadsheet would read as a formula (OWASP's CSV injection advice)."""
    return "'" + text if text.startswith(_FORMULA) else text


def _unescape(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA) else text


def _feedback_names(submissions: Sequence[Path]) -> dict[str, str]:
    names, used = {}, set()
    for path in submissions:
        stem = path.stem or "submission"
        name, n = f"{stem}.json", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.json"
        used.add(name)
        names[str(path)] = name
    return names


def write_feedback(grades: Sequence[Grade], feedback_dir: str | Path, names: dict[str, str] | None = None) -> list[Path]:
    """A JSON file per submission (named after it) with every check's message."""
    folder = Path(feedback_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = names or _feedback_names([Path(g.file) for g in grades])
    written = []
    for grade in grades:
        target = folder / names[grade.file]
        write_atomic(target, json.dumps(grade.feedback(), indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


def _number(value: float) -> str:
    return f"{value:g}"
