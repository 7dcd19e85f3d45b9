"""Google Colab support: the standard first code cell of every notebook.

A notebook opened in Colab from the book's launch button starts in a fresh runtime
without `labcode`. Its first code cell therefore has to be self-contained Python: on
Colab it installs labcode from the repository (keeping Colab's own torch, numpy,
matplotlib and ipywidgets, which already satisfy labcode's lower bounds) and warns
loudly when the runtime has no GPU; anywhere else it does nothing. `first_cell` holds
the canonical text of that cell, so the tests can check that every notebook starts
with it and that it names the repository given in the book's `_config.yml`.
"""
from __future__ import annotations

import sys

_FIRST_CELL = '''\
# Colab only: install the course code (labcode), then check for a GPU.
import subprocess, sys
if "google.colab" in sys.modules:
    source = "labcode @ git+{repository_url}@{branch}"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])
    import torch
    if not torch.cuda.is_available():
        print("!" * 64 + "\\nNO GPU. Menu: Runtime > Change runtime type > T4 GPU,"
              " then Runtime > Run all.\\n" + "!" * 64)'''


def first_cell(repository_url: str, branch: str = "main") -> str:
    """The source of the first code cell every notebook starts with.

    Args:
        repository_url: the book's repository, e.g. "https://github.com/ORG/REPO"
            (the value of `repository.url` in `_config.yml`).
        branch: the branch Colab installs from (`repository.branch`).
    """
    if not isinstance(repository_url, str) or not repository_url.startswith("https://"):
        raise ValueError(
            f"first_cell: repository_url must be an https:// URL, got {repository_url!r}"
        )
    if not isinstance(branch, str) or not branch or any(c.isspace() for c in branch):
        raise ValueError(f"first_cell: branch must be a branch name, got {branch!r}")
    return _FIRST_CELL.format(repository_url=repository_url.rstrip("/"), branch=branch)


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules
