"""Small helpers for the chapters: numbers in prose that come from code.

On the website, `glue("name", value)` hands a computed value to MyST-NB so the prose
can quote it with {glue:text}`name` (the book's rule: every number in the prose comes
from a cell above it); the cell itself shows nothing more, since the prose shows the
number. In Colab or plain Jupyter, where MyST-NB is not installed and the prose shows
only the role's name, it prints `name = value` so the reader still sees the number.
"""
from __future__ import annotations

from typing import Any


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Make `value` quotable as `name` in the book's prose.

    Args:
        name: the key used in markdown as {glue:text}`name`.
        value: a number, string or matplotlib figure.
        display: on the website, also show the value in the cell's output (off the
            website the value is always printed).

    Returns:
        The value, so a cell can write `acc = glue("acc", evaluate(...))`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue: name must be a non-empty string, got {name!r}")
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:  # Colab, plain Jupyter: no book machinery
        print(f"{name} = {value}")
        return value
    _myst_glue(name, value, display=display)
    return value
