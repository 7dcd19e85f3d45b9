"""Sphinx extension: exercise pages launch the student notebook in Colab.

The website renders `chapters/chN_*/exercises_solutions.ipynb` (the exercises with their
solutions, executed at build time). sphinx-book-theme builds the Colab link from the
page's own path, which would hand students the solutions. For every page whose name
ends in `_solutions`, this extension rewrites the Colab launch link to the student
notebook beside it (`exercises_solutions` -> `exercises.ipynb`) and warns when that
notebook is missing, which fails a `-W` build.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

SUFFIX = "_solutions"


def student_page(pagename: str) -> str | None:
    """The student notebook's page name for a solutions page, else None."""
    if not pagename.endswith(SUFFIX):
        return None
    return pagename[: -len(SUFFIX)]


def _launch_buttons(header_buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for group in header_buttons:
        if group.get("label") == "launch-buttons":
            return group.get("buttons", [])
    return []


def rewrite_launch_links(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    student = student_page(pagename)
    if student is None or "header_buttons" not in context:
        return
    student_file = Path(app.srcdir, student + ".ipynb")
    if not student_file.is_file():
        logger.warning(
            f"student_launch: page {pagename!r} has no student notebook "
            f"{student + '.ipynb'!r} beside it; its Colab button would open the solutions",
            location=pagename,
        )
        return
    solutions_tail = f"/{pagename}.ipynb"
    for button in _launch_buttons(context["header_buttons"]):
        url = button.get("url", "")
        if button.get("text") == "Colab" and url.endswith(solutions_tail):
            button["url"] = url[: -len(solutions_tail)] + f"/{student}.ipynb"
            button["text"] = "Colab (student version)"
            button["tooltip"] = "Open the exercises without solutions in Colab"


def setup(app: Sphinx) -> dict[str, Any]:
    # sphinx-book-theme adds the launch buttons at priority 501; run after it.
    app.connect("html-page-context", rewrite_launch_links, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
