"""How many seconds `labcode grade` adds to a submission beyond running the notebook itself.

Builds a solution notebook with every exercise of the book (correct answers written apart
from the answer key, tests/fixtures/exercises/wrong_answers.py, so every case of every
check runs: the slowest grading there is), runs it once plainly with nbclient and once
through labcode.grading.grade_notebook in the bubblewrap sandbox, and prints the difference.

    .venv/bin/python benchmarks/grading.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from labcode import grading, sandbox
from labcode.checks import EXERCISES


ANSWERS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "exercises"


def all_exercises_notebook() -> nbformat.NotebookNode:
    setup = (f"import sys\nsys.path.insert(0, {str(ANSWERS)!r})\nimport torch\n"
             "from labcode import checks as check\nimport wrong_answers")
    cells = [nbformat.v4.new_code_cell(setup)]
    for name in EXERCISES:
        cells.append(nbformat.v4.new_code_cell(f"{name} = wrong_answers.RIGHT_ANSWERS[{name!r}]",
                                               metadata={"labcode": {"exercise": name}}))
        cells.append(nbformat.v4.new_code_cell(f"check.{name}({name})"))
    return nbformat.v4.new_notebook(cells=cells)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the kernels), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def plain_run(path: Path) -> tuple[float, float]:
    nb = nbformat.read(str(path), as_version=4)
    start, cpu = time.perf_counter(), cpu_seconds()
    NotebookClient(nb, timeout=600, allow_errors=True, km=sandbox._kernel_manager()).execute(cleanup_kc=True)
    return time.perf_counter() - start, cpu_seconds() - cpu


def graded_run(path: Path) -> tuple[float, float, grading.Grade]:
    start, cpu = time.perf_counter(), cpu_seconds()
    setup = grading.prepare(grading.find_exercises(nbformat.read(str(path), as_version=4)), timeout=600)
    grade = grading.grade_notebook(path, setup)
    return time.perf_counter() - start, cpu_seconds() - cpu, grade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "all_solutions.ipynb"
        nbformat.write(all_exercises_notebook(), str(path))
        plain, graded, plain_cpu, graded_cpu = [], [], [], []
        for _ in range(args.repeat):
            seconds, cpu = plain_run(path)
            plain.append(seconds)
            plain_cpu.append(cpu)
            seconds, cpu, grade = graded_run(path)
            graded.append(seconds)
            graded_cpu.append(cpu)
            assert grade.total == grade.max_total == len(EXERCISES), grade.feedback()
    p, g = statistics.median(plain), statistics.median(graded)
    pc, gc = statistics.median(plain_cpu), statistics.median(graded_cpu)
    print(f"{len(EXERCISES)} exercises, {os.cpu_count()} CPU cores, median of {args.repeat} runs, "
          f"load average {os.getloadavg()[0]:.1f} (wall times grow with other work on the machine)")
    print(f"notebook run alone (kernel start included): {p:6.2f} s wall, {pc:6.2f} s CPU")
    print(f"graded (run + checks from the grader):      {g:6.2f} s wall, {gc:6.2f} s CPU")
    print(f"grading adds {g - p:.2f} s wall ({g / p:.2f}x the plain run) and {gc - pc:.2f} s CPU per submission")


if __name__ == "__main__":
    main()
