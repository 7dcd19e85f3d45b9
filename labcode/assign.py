"""Make student notebooks from solution notebooks, and tell when a committed one is stale.

A solution notebook marks each answer with nbgrader's markers, each alone on its line
(the course's solution notebooks also carry nbgrader's cell metadata, so nbgrader's own
generate_assignment and autograde work on them; tests/test_nbgrader.py runs them):

    def conv_output_size(n, k, stride=1, padding=0, dilation=1):
        \"\"\"Output size along one axis.\"\"\"
        ### BEGIN SOLUTION
        return (n + 2 * padding - k) // stride + 1
        ### END SOLUTION

`labcode assign` replaces every marked region of a code cell, markers included, with
`raise NotImplementedError("Your code here")` at the marker's indentation (markdown
regions become "YOUR ANSWER HERE"), drops regions between `### BEGIN HIDDEN TESTS` and
`### END HIDDEN TESTS`, clears outputs and execution counts, keeps every cell's metadata
(where the points live: {"labcode": {"exercise": "conv_output_size", "points": 2}}, see
labcode.checks), and writes the result atomically.

A notebook that carries nbgrader's cell metadata ({"nbgrader": {...}} on any cell) must
carry it consistently, or nbgrader would refuse it: every cell with a solution region is a
solution cell, every autograded test cell has points, grade ids are unique.
`nbgrader_problems` lists what is wrong and `make_student` refuses such a notebook.

The student notebook gets the source's name, less a trailing "_solutions"/"_solution"
("-solutions"/"-solution") if the name has one: `conv_solutions.ipynb` -> `conv.ipynb`.

For a repository that commits student notebooks next to their solutions:
    assert_up_to_date("chapters/conv_solutions.ipynb", "chapters/conv.ipynb")
fails with a message saying how to regenerate them; `labcode assign ... --check` exits 1
when any is stale.
"""
from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
STUB = 'raise NotImplementedError("Your code here")'
MARKDOWN_STUB = "YOUR ANSWER HERE"
_SUFFIX = re.compile(r"[_-]solutions?$")


def strip_regions(text: str, begin: str, end: str, replacement: str | None, where: str) -> str:
    """Replace each begin...end region of `text` (markers included) with `replacement`, indented like the marker.

    replacement None drops the region. Raises ValueError for a marker without its partner.
    """
    out: list[str] = []
    inside_since: int | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == begin:
            if inside_since is not None:
                raise ValueError(f"{where}: line {number}: '{begin}' inside another region opened on line {inside_since}")
            inside_since = number
            if replacement is not None:
                indent = line[: len(line) - len(line.lstrip())]
                out.append(indent + replacement + ("\n" if line.endswith("\n") else ""))
        elif marker == end:
            if inside_since is None:
                raise ValueError(f"{where}: line {number}: '{end}' without a '{begin}' before it")
            inside_since = None
        elif inside_since is None:
            out.append(line)
    if inside_since is not None:
        raise ValueError(f"{where}: line {inside_since}: '{begin}' without a '{end}' after it")
    result = "".join(out)
    # The region was the cell's last line: keep the stub, drop a newline the end marker left.
    return result[:-1] if result.endswith("\n") and not text.endswith("\n") else result


def make_student(source: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a solution notebook (a new object; the source is unchanged)."""
    problems = nbgrader_problems(source)
    if problems:
        raise ValueError(f"{name}: nbgrader's cell metadata is not consistent:\n  " + "\n  ".join(problems))
    nb = copy.deepcopy(source)
    for index, cell in enumerate(nb.cells):
        where = f"{name}: cell {index}"
        if cell.cell_type == "code":
            text = strip_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, STUB, where)
            cell.source = strip_regions(text, BEGIN_HIDDEN, END_HIDDEN, None, where)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = strip_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, MARKDOWN_STUB, where)
    return nb


def nbgrader_problems(nb: nbformat.NotebookNode) -> list[str]:
    """What nbgrader would refuse in a notebook that uses its cell metadata (empty: nothing, or no such metadata)."""
    cells = [(i, c, c.get("metadata", {}).get("nbgrader")) for i, c in enumerate(nb.cells)]
    if not any(isinstance(meta, dict) for _, _, meta in cells):
        return []
    found, ids = [], {}
    for index, cell, meta in cells:
        meta = meta if isinstance(meta, dict) else {}
        has_region = BEGIN_SOLUTION in cell.source
        if has_region and not meta.get("solution"):
            found.append(f"cell {index} holds '{BEGIN_SOLUTION}' but is not an nbgrader solution cell "
                         '(expected "solution": true in its nbgrader metadata)')
        if not meta:
            continue
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not grade_id:
            found.append(f"cell {index}: nbgrader metadata without a grade_id, got {grade_id!r}")
        elif grade_id in ids:
            found.append(f"cell {index}: grade_id {grade_id!r} is already used by cell {ids[grade_id]}")
        else:
            ids[grade_id] = index
        if meta.get("grade") and not meta.get("solution"):
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
                found.append(f"cell {index}: an nbgrader test cell needs points, a number >= 0, got {points!r}")
    return found


def student_name(source: str | os.PathLike) -> str:
    """File name of the student notebook made from `source`."""
    path = Path(source)
    return _SUFFIX.sub("", path.stem) + path.suffix


def render(source: str | os.PathLike) -> str:
    """The text `labcode assign` writes for `source`."""
    path = Path(source)
    nb = _read(path)
    return _dumps(make_student(nb, path.name))


def assign(sources: Iterable[str | os.PathLike], out_dir: str | os.PathLike) -> list[Path]:
    """Write the student notebook of each source into out_dir; return the paths written."""
    out = Path(out_dir)
    sources = [Path(s) for s in sources]
    targets: dict[str, Path] = {}
    for source in sources:  # two sources with one student name would overwrite each other
        name = student_name(source)
        if name in targets and targets[name].resolve() != source.resolve():
            raise ValueError(
                f"labcode assign: {targets[name]} and {source} would both be written to {out / name}; "
                "run assign once per source with its own --out folder (e.g. the source's own folder)")
        targets[name] = source
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in dict.fromkeys(sources):
        source = Path(source)
        target = out / student_name(source)
        if target.resolve() == source.resolve():
            raise ValueError(
                f"labcode assign: {source} would overwrite itself; name solution notebooks "
                "'*_solutions.ipynb' or write into another --out directory")
        write_atomic(target, render(source))
        written.append(target)
    return written


def stale_reasons(source: str | os.PathLike, student: str | os.PathLike) -> list[str]:
    """What differs between `student` and what assign makes from `source` (empty: up to date).

    Cell ids and notebook-level metadata (kernel, language version) are not compared.
    """
    student = Path(student)
    if not student.exists():
        return [f"{student} does not exist"]
    expected = make_student(_read(Path(source)), Path(source).name)
    try:
        actual = _read(student)
    except Exception as error:  # any unreadable file is stale
        return [f"{student} is not a readable notebook: {error}"]
    reasons = []
    if len(expected.cells) != len(actual.cells):
        reasons.append(f"{student} has {len(actual.cells)} cells, assign makes {len(expected.cells)}")
    for index, (e, a) in enumerate(zip(expected.cells, actual.cells)):
        for key in ("cell_type", "source", "metadata", "outputs", "execution_count"):
            if e.get(key) != a.get(key):
                reasons.append(f"{student}: cell {index} differs in {key}")
                break
    return reasons


def is_stale(source: str | os.PathLike, student: str | os.PathLike) -> bool:
    """True when `student` is not what `labcode assign` would make from `source`."""
    return bool(stale_reasons(source, student))


def assert_up_to_date(source: str | os.PathLike, student: str | os.PathLike) -> None:
    """AssertionError (with the command that fixes it) when the committed student notebook is stale."""
    reasons = stale_reasons(source, student)
    if reasons:
        raise AssertionError(
            "student notebook out of date with its solution:\n  " + "\n  ".join(reasons)
            + f"\nregenerate it with: labcode assign {source} --out {Path(student).parent}")


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text to path through a temporary file in the same directory and os.replace.

    The file gets the permissions a plain open() would give it (0666 less the umask), not
    the owner-only ones of a temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _dumps(nb: nbformat.NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"
