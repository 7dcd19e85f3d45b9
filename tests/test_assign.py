"""Tests for labcode.assign and `labcode assign`: solution regions become stubs, the rest is kept."""
import json
import os
from pathlib import Path

import nbformat
import pytest

from labcode import assign
from labcode.cli import main

SOURCE = Path(__file__).parent / "fixtures" / "notebooks" / "exercises_solutions.ipynb"


def read(path):
    return nbformat.read(str(path), as_version=4)


def test_solution_regions_become_stubs(tmp_path):
    (student_path,) = assign.assign([SOURCE], tmp_path)
    assert student_path.name == "exercises.ipynb"
    source, student = read(SOURCE), read(student_path)
    assert len(source.cells) == len(student.cells)
    for s, t in zip(source.cells, student.cells):
        assert s.metadata == t.metadata
        if s.cell_type == "code":
            assert t.outputs == [] and t.execution_count is None
        if "### BEGIN SOLUTION" in s.source:
            head = s.source.split("### BEGIN SOLUTION")[0]
            assert t.source.startswith(head.rstrip(" "))  # def line and docstring kept
            assert t.source.endswith('    raise NotImplementedError("Your code here")')
            answer = s.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0].strip()
            assert answer.splitlines()[0] not in t.source
        else:
            assert "### BEGIN HIDDEN TESTS" in s.source or s.source == t.source
    text = student_path.read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "assert conv_output_size" not in text
    assert student.cells[-1].source == 'print("done")'


def test_regions_in_the_middle_keep_indentation_and_following_lines():
    text = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    y = x\n    ### END SOLUTION\n    return y\n"
    out = assign.strip_regions(text, assign.BEGIN_SOLUTION, assign.END_SOLUTION, assign.STUB, "t")
    assert out == 'def f(x):\n    y = 1\n    raise NotImplementedError("Your code here")\n    return y\n'


def test_markdown_answers_are_replaced():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION")])
    assert assign.make_student(nb).cells[0].source == "Why?\nYOUR ANSWER HERE"


@pytest.mark.parametrize("text,words", [
    ("### BEGIN SOLUTION\nx = 1\n", "without a '### END SOLUTION'"),
    ("x = 1\n### END SOLUTION\n", "without a '### BEGIN SOLUTION'"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another region"),
])
def test_unbalanced_markers_name_the_cell(text, words):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 0"), nbformat.v4.new_code_cell(text)])
    with pytest.raises(ValueError, match="cell 1") as info:
        assign.make_student(nb, "nb.ipynb")
    assert words in str(info.value)


def test_student_names():
    assert assign.student_name("a/conv_solutions.ipynb") == "conv.ipynb"
    assert assign.student_name("conv-solution.ipynb") == "conv.ipynb"
    assert assign.student_name("conv.ipynb") == "conv.ipynb"


def test_refuses_to_overwrite_the_source(tmp_path):
    source = tmp_path / "conv.ipynb"
    source.write_text(SOURCE.read_text())
    with pytest.raises(ValueError, match="overwrite itself"):
        assign.assign([source], tmp_path)
    assert source.read_text() == SOURCE.read_text()


def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "exercises.ipynb"
    target.write_text("old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        assign.assign([SOURCE], tmp_path)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["exercises.ipynb"]  # no temp file left


def test_staleness(tmp_path):
    source = tmp_path / "ex_solutions.ipynb"
    source.write_text(SOURCE.read_text())
    out = tmp_path / "student"
    (student,) = assign.assign([source], out)
    assert not assign.is_stale(source, student)
    assign.assert_up_to_date(source, student)
    assert main(["assign", str(source), "--out", str(out), "--check"]) == 0

    # Jupyter re-saving it (new ids, kernel metadata) is not a change
    nb = read(student)
    nb.metadata["kernelspec"]["display_name"] = "Other"
    for cell in nb.cells:
        cell.id = "x" + cell.id[1:]
    nbformat.write(nb, str(student))
    assert not assign.is_stale(source, student)

    nb = read(source)
    nb.cells[2].source = nb.cells[2].source.replace("Output size", "The output size")
    nbformat.write(nb, str(source))
    assert assign.is_stale(source, student)
    assert assign.stale_reasons(source, student) == [f"{student}: cell 2 differs in source"]
    with pytest.raises(AssertionError, match="labcode assign"):
        assign.assert_up_to_date(source, student)
    assert main(["assign", str(source), "--out", str(out), "--check"]) == 1
    assert assign.is_stale(source, tmp_path / "missing.ipynb")


def test_cli_assign(tmp_path, capsys):
    assert main(["assign", str(SOURCE), "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    json.loads((tmp_path / "exercises.ipynb").read_text())
    assert main(["assign", str(tmp_path / "nothing.ipynb"), "--out", str(tmp_path)]) == 2


def test_several_sources_with_one_student_name_are_refused(tmp_path):
    first, second = tmp_path / "a" / "exercises_solutions.ipynb", tmp_path / "b" / "exercises_solutions.ipynb"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text(SOURCE.read_text())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="would both be written"):
        assign.assign([first, second], out)
    assert not out.exists() or list(out.iterdir()) == []
    assert main(["assign", str(first), str(second), "--out", str(out)]) == 2
    other = tmp_path / "b" / "other_solutions.ipynb"
    other.write_text(SOURCE.read_text())
    assert sorted(p.name for p in assign.assign([first, other], out)) == ["exercises.ipynb", "other.ipynb"]


def test_written_files_get_the_users_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    (path,) = assign.assign([SOURCE], tmp_path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
