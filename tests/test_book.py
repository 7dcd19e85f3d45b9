"""The book's configuration, table of contents, notebooks' first cells and CI files.

Fast checks that need no build: `_toc.yml` names files that exist; `_config.yml`
names the repository, launches Colab and keeps non-book folders out of the build;
every notebook starts with the standard Colab cell (labcode.colab.first_cell) for
that repository; exercise pages have their student notebook; every citation key is
in references.bib; the GitHub workflows run the tests and deploy the book. Also unit
tests of the `_ext/student_launch.py` Sphinx extension and of the first cell itself.
"""
from __future__ import annotations

import io
import json
import re
import sys
import types
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from book_toc import toc_files  # tests/book_toc.py
from labcode.colab import first_cell

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import student_launch  # noqa: E402  (the book's local Sphinx extension)

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
WORKFLOWS = ROOT / ".github" / "workflows"


def source_of(entry: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        path = ROOT / (entry + suffix)
        if path.is_file():
            return path
    return None


def book_notebooks() -> list[Path]:
    return [p for p in map(source_of, toc_files(TOC)) if p is not None and p.suffix == ".ipynb"]


def all_notebooks() -> list[Path]:
    """Notebooks of the book plus the student notebooks beside them."""
    return sorted(
        p for p in (ROOT / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )


# --- table of contents ----------------------------------------------------------


def test_toc_is_a_numbered_book_with_existing_files():
    assert TOC["format"] == "jb-book"
    entries = toc_files(TOC)
    missing = [e for e in entries if source_of(e) is None]
    assert missing == [], f"_toc.yml names files that do not exist: {missing}"
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    assert duplicates == [], f"_toc.yml lists these twice: {duplicates}"
    for part in TOC.get("parts", []):
        if any(c["file"].startswith("chapters/ch") for c in part["chapters"]):
            assert part.get("numbered") is True, f"part {part['caption']!r} must be numbered"


def test_bibliography_and_licences_are_in_the_toc():
    entries = toc_files(TOC)
    assert "bibliography" in entries and "licences" in entries
    assert "{bibliography}" in (ROOT / "bibliography.md").read_text(encoding="utf-8")


def test_exercise_pages_have_a_student_notebook_and_students_stay_out_of_the_toc():
    entries = toc_files(TOC)
    for entry in entries:
        student = student_launch.student_page(entry)
        if student is not None:
            assert (ROOT / f"{student}.ipynb").is_file(), f"{entry} has no {student}.ipynb"
            assert student not in entries, f"{student} (student notebook) must not be a page"


# --- configuration ------------------------------------------------------------------


def test_config_names_the_repository_and_launches_colab():
    repo = CONFIG["repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo["url"]), repo["url"]
    assert repo["branch"] == "main"
    assert repo.get("path_to_book", "") == ""  # the book is the repository root
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["launch_buttons"].get("thebe") in (None, False)
    assert CONFIG["html"]["use_repository_button"] is True
    assert CONFIG["html"]["use_issues_button"] is True


def test_config_executes_with_cache_and_time_limit_and_excludes_non_book_folders():
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert isinstance(execute["timeout"], int) and execute["timeout"] > 0
    assert execute.get("allow_errors", False) is False
    assert CONFIG["only_build_toc_files"] is True
    excluded = set(CONFIG["exclude_patterns"])
    for folder in ("_build", ".venv", "tests", "labcode", "benchmarks", "README.md"):
        assert folder in excluded, f"exclude_patterns lacks {folder}"
    assert "**/exercises.ipynb" in excluded


def test_config_loads_the_extensions_the_book_needs_and_not_sphinx_thebe():
    extensions = CONFIG["sphinx"]["config"]["extensions"]
    for name in ("myst_nb", "sphinx_book_theme", "sphinx_copybutton",
                 "sphinxcontrib.bibtex", "sphinx_external_toc", "student_launch"):
        assert name in extensions
    # sphinx-thebe's inline `const THEBE_JS_URL` is written twice per page by Sphinx 7.4
    # (a script error on every page); the book launches Colab, not Thebe.
    assert "sphinx_thebe" not in extensions
    assert CONFIG["sphinx"]["local_extensions"] == {"student_launch": "_ext"}
    bibfiles = CONFIG["bibtex_bibfiles"]
    assert all((ROOT / b).is_file() for b in bibfiles), bibfiles


# --- notebooks ----------------------------------------------------------------------


def first_code_cell(path: Path) -> str:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            source = cell["source"]
            return "".join(source) if isinstance(source, list) else source
    return ""


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_starts_with_the_standard_colab_cell(path):
    expected = first_cell(CONFIG["repository"]["url"], CONFIG["repository"]["branch"])
    assert first_code_cell(path).strip() == expected.strip(), (
        f"{path.relative_to(ROOT)}: the first code cell must be exactly "
        "labcode.colab.first_cell(<repository.url>, <repository.branch>) from _config.yml"
    )


def first_code_cell_tags(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            return list(cell.get("metadata", {}).get("tags", []))
    return []


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_colab_cell_stays_in_the_notebook_but_is_removed_from_the_website(path):
    # The install cell means nothing to a reader of the website; MyST-NB drops a
    # cell tagged remove-cell from the page while Colab and Jupyter still run it.
    tags = first_code_cell_tags(path)
    assert "remove-cell" in tags, (
        f"{path.relative_to(ROOT)}: the first (Colab install) cell must carry the "
        f"tag 'remove-cell' so the website hides it; its tags are {tags}"
    )


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_figures_have_caption_name_and_alt_text(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(notebook["cells"]):
        meta = cell.get("metadata", {}).get("mystnb", {})
        if "figure" in meta:
            where = f"{path.relative_to(ROOT)} cell {index}"
            assert meta["figure"].get("caption"), f"{where}: figure without caption"
            assert meta["figure"].get("name"), f"{where}: figure without name (for numref)"
            assert meta.get("image", {}).get("alt"), f"{where}: figure without image alt text"


def cited_keys(text: str) -> set[str]:
    keys = set()
    for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
        keys.update(k.strip() for k in group.split(","))
    return keys


def test_every_citation_is_in_references_bib():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    defined = set(re.findall(r"@\w+\{([^,\s]+),", bib))
    sources = [p for p in map(source_of, toc_files(TOC)) if p is not None]
    undefined = {
        (p.relative_to(ROOT).as_posix(), key)
        for p in sources
        for key in cited_keys(p.read_text(encoding="utf-8"))
        if key not in defined
    }
    assert undefined == set(), f"citations missing from references.bib: {sorted(undefined)}"
    assert cited_keys("see {cite:p}`a, b` and {cite}`c`") == {"a", "b", "c"}


# --- the first cell -------------------------------------------------------------------


def run_first_cell(colab: bool, cuda: bool, monkeypatch) -> tuple[str, list]:
    import subprocess

    import torch

    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda args: calls.append(args) or 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    out = io.StringIO()
    with redirect_stdout(out):
        exec(first_cell("https://github.com/o/r", "main"), {})
    return out.getvalue(), calls


def test_first_cell_does_nothing_outside_colab(monkeypatch):
    output, calls = run_first_cell(colab=False, cuda=False, monkeypatch=monkeypatch)
    assert (output, calls) == ("", [])


def test_first_cell_on_colab_installs_labcode_and_warns_without_gpu(monkeypatch):
    output, calls = run_first_cell(colab=True, cuda=False, monkeypatch=monkeypatch)
    assert len(calls) == 1
    assert calls[0][1:] == ["-m", "pip", "install", "-q", "labcode @ git+https://github.com/o/r@main"]
    assert "NO GPU" in output and "Runtime > Change runtime type > T4 GPU" in output
    output, calls = run_first_cell(colab=True, cuda=True, monkeypatch=monkeypatch)
    assert output == "" and len(calls) == 1


def test_first_cell_rejects_bad_arguments():
    with pytest.raises(ValueError, match="https:// URL"):
        first_cell("github.com/o/r")
    with pytest.raises(ValueError, match="branch name"):
        first_cell("https://github.com/o/r", "my branch")


# --- the Sphinx extension -------------------------------------------------------------


def launch_context(url: str) -> dict:
    return {"header_buttons": [{"label": "launch-buttons", "buttons": [
        {"type": "link", "text": "Colab", "url": url}]}]}


def test_student_launch_rewrites_colab_link_of_solution_pages(tmp_path):
    (tmp_path / "chapters" / "ch1").mkdir(parents=True)
    (tmp_path / "chapters" / "ch1" / "exercises.ipynb").write_text("{}")
    app = types.SimpleNamespace(srcdir=str(tmp_path))
    base = "https://colab.research.google.com/github/o/r/blob/main/chapters/ch1/"
    context = launch_context(base + "exercises_solutions.ipynb")
    student_launch.rewrite_launch_links(app, "chapters/ch1/exercises_solutions", "page", context, None)
    button = context["header_buttons"][0]["buttons"][0]
    assert button["url"] == base + "exercises.ipynb"
    context = launch_context(base + "convolution.ipynb")
    student_launch.rewrite_launch_links(app, "chapters/ch1/convolution", "page", context, None)
    assert context["header_buttons"][0]["buttons"][0]["url"] == base + "convolution.ipynb"


def test_student_launch_page_names():
    assert student_launch.student_page("chapters/ch2_x/exercises_solutions") == "chapters/ch2_x/exercises"
    assert student_launch.student_page("chapters/ch2_x/exercises") is None


# --- CI workflows ---------------------------------------------------------------------


def load_workflow(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def uses(step_list: list[dict]) -> list[str]:
    return [s["uses"].split("@")[0] for s in step_list if "uses" in s]


def test_test_workflow_runs_make_test_on_pushes_and_pull_requests():
    workflow = load_workflow("test.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    job_steps = steps(workflow, "test")
    assert uses(job_steps)[:2] == ["actions/checkout", "actions/setup-python"]
    setup = next(s for s in job_steps if s.get("uses", "").startswith("actions/setup-python"))
    assert str(setup["with"]["python-version"]) == "3.11"
    assert any(s.get("run", "").startswith("make test") for s in job_steps)


def test_book_workflow_builds_caches_and_deploys_to_pages():
    workflow = load_workflow("book.yml")
    assert workflow["permissions"]["pages"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    build = steps(workflow, "build")
    cache = next(s for s in build if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == "_build/.jupyter_cache"
    assert any(s.get("run", "").startswith("make book") for s in build)
    upload = next(s for s in build if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert "actions/deploy-pages" in uses(steps(workflow, "deploy"))
    assert workflow["jobs"]["deploy"]["needs"] == "build"
