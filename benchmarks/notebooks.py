"""How long does each teaching notebook take to run from top to bottom?

Runs every teaching notebook (chapters/ch*/0*.ipynb, not the exercises) in a fresh
kernel with nbclient, in full mode (LABCODE_QUICK unset) unless --quick, one after the
other, and prints a table of wall times with the goal beside them: at most 5 minutes
each on two CPU cores, at most 1 minute on a GPU. A notebook that fails is reported
with its error and the run goes on. Nothing is written back into the notebooks.

    python benchmarks/notebooks.py [--quick] [--device auto|cpu] [--only ch2]
                                   [--timeout 1200] [--out times.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_CPU, GOAL_GPU = 300.0, 60.0  # seconds per notebook


def teaching_notebooks(only: str = "") -> list[Path]:
    """chapters/ch*/0*.ipynb in book order, those whose path contains `only`."""
    found = sorted(ROOT.glob("chapters/ch*/0*.ipynb"))
    return [p for p in found if only in str(p.relative_to(ROOT))]


def run_notebook(path: Path, timeout: int) -> tuple[float, str]:
    """Execute one notebook in its own folder; (seconds, '' or the error's first line)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
        error = ""
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        error = f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:160]
    return time.perf_counter() - start, error


def describe_machine(device: str) -> str:
    try:
        import torch
        gpu = torch.cuda.is_available() and device != "cpu"
        name = torch.cuda.get_device_name(0) if gpu else f"CPU, {os.cpu_count()} cores"
        version = torch.__version__
    except ImportError:
        gpu, name, version = False, f"CPU, {os.cpu_count()} cores", "not installed"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{name} ({platform.machine()}), torch {version}{load}", gpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="LABCODE_QUICK=1 (small runs)")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto",
                        help="cpu hides every GPU from the notebooks")
    parser.add_argument("--only", default="", help="run the notebooks whose path contains this")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()

    notebooks = teaching_notebooks(args.only)
    if not notebooks:
        parser.error(f"no teaching notebook under chapters/ matches --only {args.only!r}")
    if args.quick:
        os.environ["LABCODE_QUICK"] = "1"
    else:
        os.environ.pop("LABCODE_QUICK", None)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the kernels inherit this environment
    machine, gpu = describe_machine(args.device)
    goal = GOAL_GPU if gpu else GOAL_CPU
    mode = "quick mode (LABCODE_QUICK=1)" if args.quick else "full mode"
    lines = [f"{machine}; {mode}; goal at most {goal:.0f} s each", "",
             "| notebook | seconds | within goal |", "|---|---:|---|"]
    print("\n".join(lines), flush=True)
    failures = 0
    for path in notebooks:
        seconds, error = run_notebook(path, args.timeout)
        verdict = "failed: " + error if error else ("yes" if seconds <= goal else "no")
        failures += bool(error)
        line = f"| {path.relative_to(ROOT / 'chapters')} | {seconds:.0f} | {verdict} |"
        lines.append(line)
        print(line, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
