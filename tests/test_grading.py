"""Tests for labcode.grading and `labcode grade`, on made-up submissions built from a small
solution notebook (three cheap exercises, 4 points). One batch runs seven kernels."""
import csv
import json
from pathlib import Path

import nbformat
import pytest

from labcode import assign, grading
from labcode.cli import main

SOURCE = Path(__file__).parent / "fixtures" / "notebooks" / "exercises_solutions.ipynb"
TIMEOUT = 10  # seconds per notebook; the one that loops forever uses all of it
SEED = 1234

WRONG_CONV = '''def conv_output_size(n, k, stride=1, padding=0, dilation=1):
    p = {"valid": 0, "same": (k - 1) // 2, "full": k - 1}.get(padding, padding)
    return (n + 2 * p - k) // stride'''
RIGHT_PADDING = '''def padding_amount(mode, k):
    return {"valid": (0, 0), "same": ((k - 1) // 2, k // 2), "full": (k - 1, k - 1)}[mode]'''
WRONG_POOL = '''def my_max_pool(x, kernel_size, stride):
    return x.unfold(2, kernel_size, 1).unfold(3, kernel_size, 1).amax(dim=(-1, -2))'''
TAMPER = '''import sys
import labcode.checks
from labcode.checks.core import CheckResult

def always_pass(*args, **kwargs):
    print("✅ passed")
    return CheckResult("x", True, True, "✅ passed", 1.0, 1.0, 1, 1)

for name, module in list(sys.modules.items()):
    if name.startswith("labcode") and module is not None:
        for attr in list(vars(module)):
            if callable(getattr(module, attr)) and not isinstance(getattr(module, attr), type):
                setattr(module, attr, always_pass)
for name in ("conv_output_size", "padding_amount", "max_pool2d"):
    print(getattr(labcode.checks, name)(None).message)'''


def code(source):
    return nbformat.v4.new_code_cell(source)


def write(path, nb):
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    solution = nbformat.read(str(SOURCE), as_version=4)
    (student_path,) = assign.assign([SOURCE], folder / "template")
    student = nbformat.read(str(student_path), as_version=4)

    wrong = nbformat.read(str(student_path), as_version=4)
    wrong.cells[2].source, wrong.cells[4].source, wrong.cells[6].source = WRONG_CONV, RIGHT_PADDING, WRONG_POOL
    loop = nbformat.read(str(SOURCE), as_version=4)
    loop.cells.insert(4, code("while True:\n    pass"))
    crash = nbformat.read(str(SOURCE), as_version=4)
    crash.cells.insert(0, code("import os\nos._exit(1)"))
    tamper = nbformat.read(str(student_path), as_version=4)
    tamper.cells.append(code(TAMPER))

    paths = [
        write(folder / "solutions.ipynb", solution),
        write(folder / "untouched.ipynb", student),
        write(folder / "wrong.ipynb", wrong),
        write(folder / "loop.ipynb", loop),
        folder / "notjson.ipynb",
        folder / "blank.ipynb",
        write(folder / "crash.ipynb", crash),
        write(folder / "tamper.ipynb", tamper),
    ]
    paths[4].write_text("{this is not json")
    paths[5].write_text("")
    out = folder / "out" / "grades.csv"
    feedback = folder / "feedback"
    code_ = main(["grade", *map(str, paths), "--source", str(SOURCE), "--out", str(out),
                  "--feedback", str(feedback), "--timeout", str(TIMEOUT), "--quiet", "--jobs", "2",
                  "--seed", str(SEED)])
    assert code_ == 0
    with open(out, newline="") as handle:
        rows = {Path(row["file"]).stem: row for row in csv.DictReader(handle)}
    return {"rows": rows, "csv": out, "feedback": feedback, "paths": paths}


def feedback(batch, stem):
    return json.loads((batch["feedback"] / f"{stem}.json").read_text())


def scores(row):
    return [float(row[c]) for c in ("conv_output_size", "padding_amount", "max_pool2d", "total", "max_total")]


def test_csv_has_one_row_per_submission_in_order(batch):
    with open(batch["csv"], newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        files = [row[0] for row in reader]
    assert header == ["file", "conv_output_size", "padding_amount", "max_pool2d", "total", "max_total",
                      "status", "reason"]
    assert files == [str(p) for p in batch["paths"]]
    assert sorted(p.name for p in batch["csv"].parent.iterdir()) == ["grades.csv"]  # no temp files


def test_solutions_get_full_marks(batch):
    row = batch["rows"]["solutions"]
    assert scores(row) == [2, 1, 1, 4, 4] and row["status"] == "ok"
    assert all(e["passed"] for e in feedback(batch, "solutions")["exercises"])


def test_untouched_student_notebook_gets_zero(batch):
    row = batch["rows"]["untouched"]
    assert scores(row) == [0, 0, 0, 0, 4] and row["status"] == "ok"
    for entry in feedback(batch, "untouched")["exercises"]:
        assert not entry["attempted"] and "not attempted" in entry["message"]


def test_wrong_answers_get_partial_marks_and_hints(batch):
    assert scores(batch["rows"]["wrong"]) == [0, 1, 0, 1, 4]
    messages = {e["column"]: e["message"] for e in feedback(batch, "wrong")["exercises"]}
    assert "+ 1" in messages["conv_output_size"] and "input:" in messages["conv_output_size"]
    assert "moved by 1 pixel" in messages["max_pool2d"]


def test_endless_loop_is_stopped_and_earlier_work_counts(batch):
    row = batch["rows"]["loop"]
    assert row["status"] == "timeout" and "cell 4" in row["reason"]
    assert scores(row) == [2, 0, 0, 2, 4]


def test_unreadable_and_empty_files_get_rows(batch):
    assert batch["rows"]["notjson"]["status"] == "invalid" and "JSON" in batch["rows"]["notjson"]["reason"]
    assert batch["rows"]["blank"]["status"] == "empty"
    assert scores(batch["rows"]["notjson"])[3] == 0 and scores(batch["rows"]["blank"])[3] == 0


def test_crashing_kernel_gets_a_row(batch):
    row = batch["rows"]["crash"]
    assert row["status"] == "crashed" and "cell 0" in row["reason"] and float(row["total"]) == 0
    assert feedback(batch, "crash")["exercises"][0]["message"].startswith("⬜")


def test_patching_the_checks_earns_nothing(batch):
    row = batch["rows"]["tamper"]
    assert scores(row) == [0, 0, 0, 0, 4]


def test_grading_again_gives_the_same_grade(batch):
    slots = grading.find_exercises(nbformat.read(str(SOURCE), as_version=4))
    again = grading.grade_notebook(batch["paths"][2], grading.prepare(slots, TIMEOUT, seed=SEED))
    before = feedback(batch, "wrong")
    assert again.feedback()["exercises"] == before["exercises"]
    assert again.total == before["total"] == 1


def test_find_exercises_reads_metadata_and_infers_functions():
    slots = grading.find_exercises(nbformat.read(str(SOURCE), as_version=4))
    assert [(s.exercise, s.function, s.points) for s in slots] == [
        ("conv_output_size", "conv_output_size", 2.0), ("padding_amount", "padding_amount", 1.0),
        ("max_pool2d", "my_max_pool", 1.0)]


def test_find_exercises_without_metadata_uses_check_calls():
    nb = nbformat.v4.new_notebook(cells=[code("def f(x): pass"), code("check.patchify(f)\ncheck.nothing(f)")])
    assert [(s.exercise, s.function, s.points) for s in grading.find_exercises(nb)] == [("patchify", "f", 1.0)]


def test_unknown_exercise_and_bad_points_are_errors():
    nb = nbformat.v4.new_notebook(cells=[code("x = 1")])
    nb.cells[0].metadata["labcode"] = {"exercise": "no_such_check"}
    with pytest.raises(ValueError, match="unknown exercise 'no_such_check'"):
        grading.find_exercises(nb)
    nb.cells[0].metadata["labcode"] = {"exercise": "patchify", "points": "two"}
    with pytest.raises(ValueError, match="points must be a number"):
        grading.find_exercises(nb)


def test_the_cli_warns_that_grading_runs_student_code(tmp_path, capsys):
    (tmp_path / "x.ipynb").write_text("")
    assert main(["grade", str(tmp_path / "x.ipynb"), "--source", str(SOURCE), "--out", str(tmp_path / "g.csv"),
                 "--quiet"]) == 0
    assert "container or a virtual machine" in capsys.readouterr().err


def test_points_come_only_from_the_source(tmp_path, capsys):
    (tmp_path / "x.ipynb").write_text("")
    with pytest.raises(SystemExit):
        main(["grade", str(tmp_path / "x.ipynb"), "--out", str(tmp_path / "g.csv")])
    assert "--source" in capsys.readouterr().err
    with pytest.raises(ValueError, match="source"):
        grading.grade_all([tmp_path / "x.ipynb"], tmp_path / "g.csv", source=None)


def test_the_inputs_are_drawn_with_a_secret_seed():
    slots = grading.find_exercises(nbformat.read(str(SOURCE), as_version=4))
    first, second = grading.prepare(slots), grading.prepare(slots)
    a, b = first.cases["conv_output_size"], second.cases["conv_output_size"]
    assert [c.args for c in a] != [c.args for c in b]  # random draws differ between batches
    again = grading.prepare(slots, seed=7).cases["conv_output_size"]
    assert [c.args for c in grading.prepare(slots, seed=7).cases["conv_output_size"]] == [c.args for c in again]


def test_the_csv_is_written_after_every_submission_and_resume_skips_rows(tmp_path, monkeypatch):
    blank, empty, also = tmp_path / "a.ipynb", tmp_path / "b.ipynb", tmp_path / "c.ipynb"
    for path in (blank, empty, also):
        path.write_text("")
    out = tmp_path / "g.csv"
    real = grading.grade_notebook
    calls = []

    def interrupted(path, setup):
        calls.append(Path(path).name)
        if Path(path).name == "b.ipynb":
            raise KeyboardInterrupt  # Ctrl-C in the middle of the batch
        return real(path, setup)

    monkeypatch.setattr(grading, "grade_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        grading.grade_all([blank, empty, also], out, source=SOURCE, sandboxed=False)
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["file"]).name for r in rows] == ["a.ipynb"] and rows[0]["status"] == "empty"
    rows[0]["reason"] = "graded before the interruption"
    grading.write_rows(rows, ["conv_output_size", "padding_amount", "max_pool2d"], out)
    monkeypatch.setattr(grading, "grade_notebook", real)
    calls.clear()
    monkeypatch.setattr(grading, "grade_notebook", lambda p, s: (calls.append(Path(p).name), real(p, s))[1])
    grading.grade_all([blank, empty, also], out, source=SOURCE, sandboxed=False, resume=True)
    assert calls == ["b.ipynb", "c.ipynb"]
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["file"]).name for r in rows] == ["a.ipynb", "b.ipynb", "c.ipynb"]
    assert rows[0]["reason"] == "graded before the interruption"


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        grading.grade_all([], tmp_path / "g.csv", source=SOURCE, sandboxed=False, jobs=0)


def test_use_of_the_reference_solutions_is_flagged():
    nb = nbformat.v4.new_notebook(cells=[code("from labcode import checks as check")])
    assert grading.review_notes(nb) == []
    nb.cells.append(code("from labcode.references import conv2d"))
    assert "review by hand" in grading.review_notes(nb)[0]


@pytest.mark.parametrize("source", [
    "from labcode.checks.answers import conv2d",
    "from labcode.checks import core, answers",
    "import labcode.checks.answers as key",
    "y = check.answers.conv2d(x, w)",
    "from labcode import references",
])
def test_use_of_the_answer_key_is_flagged_under_every_spelling(source):
    clean = nbformat.v4.new_notebook(cells=[code("from labcode import checks as check\nanswers = 3\ncheck.conv2d(conv2d)")])
    assert grading.review_notes(clean) == []
    flagged = nbformat.v4.new_notebook(cells=[code("from labcode import checks as check"), code(source)])
    assert "review by hand" in grading.review_notes(flagged)[0]


def test_a_file_name_that_a_spreadsheet_would_run_is_escaped_in_the_csv(tmp_path, monkeypatch):
    # Submissions named like formulas, graded by relative path from their folder, so that the
    # file column of the CSV starts with = + - @; a spreadsheet would run such a cell.
    folder = tmp_path / "submissions"
    folder.mkdir()
    monkeypatch.chdir(folder)
    names = ["=1+1.ipynb", "+SUM(A1).ipynb", "-2+3.ipynb", "@cmd.ipynb"]
    write(folder / names[0], nbformat.read(str(SOURCE), as_version=4))  # really graded, in the sandbox
    for name in names[1:]:
        (folder / name).write_text("")
    out = tmp_path / "out" / "grades.csv"
    assert main(["grade", "--source", str(SOURCE), "--out", str(out), "--timeout", str(TIMEOUT), "--quiet",
                 "--seed", str(SEED), "--", *names]) == 0
    lines = out.read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["'" + name for name in names]
    rows = list(csv.DictReader(out.open(newline="")))
    assert rows[0]["total"] == "4" and rows[0]["status"] == "ok", rows[0]
    assert [r["status"] for r in rows[1:]] == ["empty"] * 3
    assert not any(value.startswith(("=", "+", "-", "@")) for row in rows for value in row.values())
    assert list(grading.read_rows(out)) == names  # --resume reads the names back unescaped


def test_nbgrader_points_of_a_test_cell_are_the_points_labcode_grade_gives():
    nb = nbformat.v4.new_notebook(cells=[code("def f(x): pass"), code("assert check.patchify(f).passed"),
                                         code("assert check.conv2d(g).passed")])
    nb.cells[1].metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 3,
                                        "grade_id": "check_patchify", "schema_version": 3}
    assert [(s.exercise, s.function, s.points) for s in grading.find_exercises(nb)] == [
        ("patchify", "f", 3.0), ("conv2d", "g", 1.0)]
    nb.cells[1].metadata["nbgrader"]["points"] = "three"
    with pytest.raises(ValueError, match="cell 1: nbgrader points must be a number >= 0, got 'three'"):
        grading.find_exercises(nb)
    nb.cells[1].metadata["labcode"] = {"exercise": "patchify", "points": 2}  # labcode's own metadata comes first
    assert [(s.exercise, s.points) for s in grading.find_exercises(nb)] == [("patchify", 2.0)]
