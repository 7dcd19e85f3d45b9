"""Google Colab support: the standard first code cell of every notebook.

A notebook opened in Colab from the book's launch button starts in a fresh runtime
without `labcode`. Its first code cell therefore has to be self-contained Python: on
Colab it installs labcode from the repository (keeping Colab's own torch, numpy,
matplotlib and ipywidgets, which already satisfy labcode's lower bounds) and warns
loudly when the runtime has no GPU; anywhere else it does nothing. `first_cell` holds
the canonical text of that cell, so the tests can check that every notebook starts
with it and that it names the repository given in the book's `_config.yml`.

`pretrained_state_dict` gives the notebooks torchvision's pretrained weights: from torch
hub's cache when they are there, downloaded on Colab (or with LABCODE_PRETRAINED=1),
and otherwise None with the reason printed. Only a failed download is turned into a
skip; a file that does not load, or (in the notebook) a state dict that does not fit
the model, raises.
"""
from __future__ import annotations

import http.client
import os
import re
import sys
from pathlib import Path

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


# What a failed download raises: URLError and HTTPError, timeouts and refused or reset
# connections are all OSErrors; IncompleteRead (the server hung up) is an HTTPException.
DOWNLOAD_ERRORS = (OSError, http.client.HTTPException)


def hub_checkpoint(weights) -> Path:
    """The file torch hub keeps torchvision `weights` in: $TORCH_HOME/hub/checkpoints/<name>."""
    import torch.hub

    url = getattr(weights, "url", None)
    if not isinstance(url, str):
        raise TypeError("hub_checkpoint: expected a torchvision Weights member such as "
                        f"AlexNet_Weights.IMAGENET1K_V1, got {weights!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def pretrained_state_dict(weights, progress: bool = True) -> dict | None:
    """torchvision's pretrained state dict for `weights`, or None when it cannot be had.

    Loads the file from torch hub's cache. A missing file is downloaded on Colab or with
    LABCODE_PRETRAINED=1 (its SHA-256 checked against the prefix in its name); elsewhere,
    or when the download fails, prints why the weights were skipped and returns None.

    Args:
        weights: a torchvision Weights member, e.g. `AlexNet_Weights.IMAGENET1K_V1`.
        progress: show a progress bar while downloading.
    """
    import torch
    import torch.hub

    path = hub_checkpoint(weights)
    if not path.exists():
        if not (in_colab() or os.environ.get("LABCODE_PRETRAINED") == "1"):
            print(f"Skipped: {path.name} is not in torch hub's cache ({path.parent}); "
                  "it is downloaded only on Colab or with LABCODE_PRETRAINED=1.")
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        sha256 = re.search(r"-([0-9a-f]{8,})\.", path.name)
        try:
            torch.hub.download_url_to_file(weights.url, str(path), progress=progress,
                                           hash_prefix=sha256.group(1) if sha256 else None)
        except DOWNLOAD_ERRORS as error:
            print(f"Skipped: could not download {weights.url} "
                  f"({type(error).__name__}: {error}). Are you offline?")
            return None
    return torch.load(path, map_location="cpu", weights_only=True)
