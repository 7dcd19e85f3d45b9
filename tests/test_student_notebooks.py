"""The committed student notebooks match what `labcode assign` makes from their sources."""
from pathlib import Path

import pytest

from labcode.assign import assert_up_to_date, stale_reasons

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(ROOT.glob("chapters/**/exercises_solutions.ipynb"))


def test_every_chapter_with_exercises_is_found():
    # The glob must see the chapters' exercise notebooks; an empty list would make the
    # parametrised test below pass vacuously.
    assert SOURCES, "no chapters/**/exercises_solutions.ipynb found"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_student_notebook_is_up_to_date(source):
    student = source.with_name("exercises.ipynb")
    assert student.exists(), f"{student} is missing: run `labcode assign {source} --out {source.parent}`"
    assert_up_to_date(source, student)


def test_a_stale_student_notebook_is_detected(tmp_path):
    source = SOURCES[0]
    student = tmp_path / "exercises.ipynb"
    text = (source.with_name("exercises.ipynb")).read_text()
    student.write_text(text.replace("NotImplementedError", "NotImplementedError  # edited", 1))
    assert stale_reasons(source, student), "an edited student notebook was not reported stale"
