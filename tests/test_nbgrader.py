"""nbgrader itself on the course's solution notebooks: generate_assignment, then autograde.

One nbgrader course in a temporary folder holds the three chapters' exercise notebooks as
assignments ch1, ch2 and ch3. nbgrader's `generate_assignment` makes each student notebook;
its `autograde` must give the solution notebook full marks, the untouched student notebook
0, and a notebook with one wrong answer exactly that exercise's points fewer. It runs the
notebooks in this venv's Python (a kernelspec written for the test), in quick mode, with
strict mode off: the test cells must fail on their own. Ten kernels in all.
"""
import copy
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from labcode import assign, grading
from labcode.checks import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "labcode-nbgrader-test"
# assignment -> (chapter folder, solution cell made wrong, its one-line wrong answer, the test cell that catches it)
CHAPTERS = {
    "ch1": ("ch1_cnn", "answer_avg_pool2d", "return max_pool2d(x, kernel_size, stride)", "check_avg_pool2d"),
    "ch2": ("ch2_alexnet_efficientnet", "answer_compound_scaling",
            "return int(base_channels * width_mult), math.ceil(base_layers * depth_mult)", "check_compound_scaling"),
    "ch3": ("ch3_vit", "answer_vit_param_count",
            "return 12 * config['num_layers'] * config['hidden_dim'] ** 2", "check_vit_param_count"),
}


def source_of(assignment):
    return ROOT / "chapters" / CHAPTERS[assignment][0] / "exercises_solutions.ipynb"


def grade_cells(nb):
    """{grade_id: points} of the autograded test cells."""
    return {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")}


def with_wrong_answer(nb, grade_id, answer):
    """A copy of the solution notebook whose cell `grade_id` has `answer` in place of its solution."""
    nb = copy.deepcopy(nb)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    cell.source = assign.strip_regions(cell.source, assign.BEGIN_SOLUTION, assign.END_SOLUTION, answer, grade_id)
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    root = tmp_path_factory.mktemp("course")
    kernels = root / "jupyter" / "kernels" / KERNEL
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "labcode venv (nbgrader test)", "language": "python"}))
    for assignment in CHAPTERS:
        (root / "source" / assignment).mkdir(parents=True)
        (root / "source" / assignment / "exercises.ipynb").write_bytes(source_of(assignment).read_bytes())
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = "labcode"
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    config.Execute.kernel_name = KERNEL
    config.Execute.timeout = 300
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(root / "jupyter"))
        env.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))  # nbgrader runs `alembic`
        env.setenv("LABCODE_QUICK", "1")
        env.delenv("LABCODE_STRICT", raising=False)
        env.chdir(root)
        api = NbGraderAPI(CourseDirectory(config=config), config=config)
        for assignment in CHAPTERS:
            result = api.generate_assignment(assignment, force=True, create=True)
            assert result["success"], result.get("error") or result.get("log")
        submissions = {}
        for assignment, (folder, grade_id, answer, _) in CHAPTERS.items():
            solution = nbformat.read(str(source_of(assignment)), as_version=4)
            release = root / "release" / assignment / "exercises.ipynb"
            submissions[assignment, "solution"] = solution
            submissions[assignment, "untouched"] = nbformat.read(str(release), as_version=4)
            submissions[assignment, "wrong"] = with_wrong_answer(solution, grade_id, answer)
        # The student notebook `labcode assign` made (committed beside the solution) is a submission too.
        submissions["ch1", "labcode_assign"] = nbformat.read(
            str(ROOT / "chapters" / "ch1_cnn" / "exercises.ipynb"), as_version=4)
        for (assignment, student), nb in submissions.items():
            folder = root / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(folder / "exercises.ipynb"))
        for assignment, student in submissions:
            result = api.autograde(assignment, student, force=True, create=True)
            assert result["success"], result.get("error") or result.get("log")
    scores = {}
    with Gradebook(config.CourseDirectory.db_url) as gradebook:
        for assignment, student in submissions:
            nb = gradebook.find_submission_notebook("exercises", assignment, student)
            scores[assignment, student] = {
                "score": nb.score, "max_score": nb.max_score,
                "cells": {g.name: (g.score, g.max_score) for g in nb.grades}}
    return {"root": root, "scores": scores}


@pytest.mark.parametrize("assignment", CHAPTERS)
def test_generate_assignment_removes_every_answer(course, assignment):
    source = nbformat.read(str(source_of(assignment)), as_version=4)
    release = nbformat.read(str(course["root"] / "release" / assignment / "exercises.ipynb"), as_version=4)
    text = "\n".join(c.source for c in release.cells)
    assert assign.BEGIN_SOLUTION not in text and assign.END_SOLUTION not in text
    answers = [c for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert answers and text.count("raise NotImplementedError()") == sum(
        c.source.count(assign.BEGIN_SOLUTION) for c in answers)
    assert grade_cells(release) == grade_cells(source)


@pytest.mark.parametrize("assignment", CHAPTERS)
def test_the_solutions_get_full_marks(course, assignment):
    got = course["scores"][assignment, "solution"]
    expected = sum(grade_cells(nbformat.read(str(source_of(assignment)), as_version=4)).values())
    assert got["max_score"] == expected > 0
    assert got["score"] == expected, got["cells"]


@pytest.mark.parametrize("assignment", CHAPTERS)
def test_the_untouched_student_notebook_gets_zero(course, assignment):
    got = course["scores"][assignment, "untouched"]
    assert got["max_score"] > 0 and got["score"] == 0, got["cells"]


def test_the_student_notebook_labcode_assign_made_gets_zero(course):
    got = course["scores"]["ch1", "labcode_assign"]
    expected = sum(grade_cells(nbformat.read(str(source_of("ch1")), as_version=4)).values())
    assert got["max_score"] == expected > 0 and got["score"] == 0, got["cells"]


@pytest.mark.parametrize("assignment", CHAPTERS)
def test_one_wrong_answer_costs_exactly_its_points(course, assignment):
    got = course["scores"][assignment, "wrong"]
    wrong_cell = CHAPTERS[assignment][3]
    points = grade_cells(nbformat.read(str(source_of(assignment)), as_version=4))[wrong_cell]
    assert got["cells"][wrong_cell] == (0, points)
    assert all(score == top for name, (score, top) in got["cells"].items() if name != wrong_cell), got["cells"]
    assert got["score"] == got["max_score"] - points


# ---------------------------------------------------------------------------------------
# The metadata itself (no nbgrader run needed)


@pytest.mark.parametrize("assignment", CHAPTERS)
def test_points_agree_with_labcode_grade_and_the_declarations(assignment):
    nb = nbformat.read(str(source_of(assignment)), as_version=4)
    nbgrader_points = grade_cells(nb)
    slots = grading.find_exercises(nb)
    assert {f"check_{s.exercise}": s.points for s in slots} == nbgrader_points
    assert all(s.points == EXERCISES[s.exercise].points for s in slots)


@pytest.mark.parametrize("assignment", CHAPTERS)
def test_every_cell_carries_consistent_nbgrader_metadata(assignment):
    nb = nbformat.read(str(source_of(assignment)), as_version=4)
    assert all("nbgrader" in c.metadata for c in nb.cells)
    assert assign.nbgrader_problems(nb) == []
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        assert meta["solution"] == (assign.BEGIN_SOLUTION in cell.source), meta["grade_id"]
        assert meta["locked"] == (not meta["solution"]), meta["grade_id"]


def test_inconsistent_nbgrader_metadata_is_refused():
    nb = nbformat.read(str(source_of("ch1")), as_version=4)
    answer = next(i for i, c in enumerate(nb.cells) if c.metadata["nbgrader"]["solution"])
    check_cell = next(i for i, c in enumerate(nb.cells) if c.metadata["nbgrader"]["grade"])
    nb.cells[answer].metadata["nbgrader"]["solution"] = False
    del nb.cells[check_cell].metadata["nbgrader"]["points"]
    nb.cells[0].metadata["nbgrader"]["grade_id"] = nb.cells[1].metadata["nbgrader"]["grade_id"]
    problems = assign.nbgrader_problems(nb)
    assert any(f"cell {answer} holds '### BEGIN SOLUTION'" in p for p in problems), problems
    assert any(f"cell {check_cell}: an nbgrader test cell needs points" in p for p in problems), problems
    assert any("cell 1: grade_id" in p and "already used by cell 0" in p for p in problems), problems
    with pytest.raises(ValueError, match="nbgrader's cell metadata is not consistent"):
        assign.make_student(nb)
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    assert assign.nbgrader_problems(plain) == []  # a notebook without nbgrader metadata is left alone


@pytest.mark.parametrize("assignment", CHAPTERS)
def test_a_check_cell_raises_on_a_wrong_answer_without_strict_mode(assignment, monkeypatch):
    monkeypatch.delenv("LABCODE_STRICT", raising=False)
    from labcode import checks as check

    nb = nbformat.read(str(source_of(assignment)), as_version=4)
    cells = [c.source for c in nb.cells if c.metadata["nbgrader"]["grade"]]
    assert cells and all(s.startswith("assert check.") and s.endswith(").passed") for s in cells)
    for source in cells:
        function = source.split("(")[1].split(")")[0]
        with pytest.raises(AssertionError):
            exec(source, {"check": check, function: None})
