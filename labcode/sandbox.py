"""One submission, run in a bubblewrap sandbox: its notebook, then its functions on the grader's inputs.

The grader (labcode.grading) never runs student code. For each submission it writes a job
folder (a copy of that submission and the inputs it drew for the checks) and starts

    bwrap --ro-bind / / ... -- python -m labcode.sandbox /tmp/job

which runs `_inside` below: the notebook top to bottom in a fresh Jupyter kernel, then, in
the same kernel, each exercise's function on the grader's inputs (labcode/checks/calling.py,
loaded from the file). The inputs come through stdin and reach the sandbox's disk only
after the notebook ran. Only data comes back, the outcomes written with torch.save on the
sandbox's stdout, read by the grader with a byte budget and torch.load(weights_only=True).

What the sandbox gives the submission (bubblewrap, https://github.com/containers/bubblewrap):
- the system read-only (`--ro-bind / /`): the installed labcode and torch cannot be changed;
- an empty private /tmp and home, and its own working folder in /tmp;
- a read-only copy of its own notebook only: the folders of the source notebook, of every
  submission and of the grades are covered by empty folders;
- no network (`--unshare-net`), its own PID namespace, so no process it starts outlives
  it (`--die-with-parent`, and the namespace ends with its first process), no terminal
  (`--new-session`), no capabilities;
- limits: address space (RLIMIT_AS) and file size (RLIMIT_FSIZE) for every process,
  the time limit (the grader kills it), and a byte budget on what comes back.

A crash, an exit or a cell that cannot be interrupted does not lose earlier work: the
cells before it run again in a fresh kernel and the functions they define are graded, as
after a timeout.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

BWRAP = "/usr/bin/bwrap"
MEMORY_LIMIT = 8 << 30  # bytes of address space per process; torch alone maps about 1.5 GiB
FILE_LIMIT = 256 << 20  # largest file a submission may write
RESULT_LIMIT = 256 << 20  # bytes the grader reads back from one sandbox
NOTEBOOK_OUTPUT_LIMIT = 1 << 20  # bytes of cell output kept per submission (errors first)
INTERRUPT_GRACE = 5.0  # seconds a timed-out cell gets to stop after an interrupt
INSIDE_JOB = "/tmp/job"
INSIDE_WORK = "/tmp/work"


def bwrap_path() -> str | None:
    """The bubblewrap executable, or None when it is not installed (Debian/Ubuntu: apt install bubblewrap)."""
    return shutil.which("bwrap") or (BWRAP if os.access(BWRAP, os.X_OK) else None)


PRIVATE_FOLDERS = ("/tmp", "/run", "/var/tmp", "/dev/shm")  # empty and private in the sandbox


def _needed() -> list[Path]:
    """Paths the sandbox must see: this Python, its packages and labcode."""
    import labcode

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent,
             Path(labcode.__file__).resolve().parent.parent}
    return [p.resolve() for p in paths]


def _hide_args(hidden: Sequence[str | os.PathLike]) -> list[str]:
    """Cover each hidden path with an empty folder (or /dev/null for a file).

    A folder that holds this Python or labcode cannot be covered whole: its notebooks and
    CSV files are covered one by one instead.
    """
    args: list[str] = []
    needed = _needed()
    done: set[Path] = set()
    for item in hidden:
        path = Path(item).resolve()
        if path in done or not path.exists() or path == Path("/"):
            continue
        done.add(path)
        if path.is_dir() and not any(n == path or path in n.parents for n in needed):
            args += ["--tmpfs", str(path)]
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix in (".ipynb", ".csv", ".json"):
                    args += ["--ro-bind", "/dev/null", str(child)]
        elif path.is_file():
            args += ["--ro-bind", "/dev/null", str(path)]
    return args


def command(job_dir: Path, hidden: Sequence[str | os.PathLike] = (), memory: int = MEMORY_LIMIT,
            sandboxed: bool = True) -> list[str]:
    """The command line that runs a job folder: in bubblewrap, or (sandboxed=False) as a plain process."""
    inner = [sys.executable, "-I", "-m", "labcode.sandbox", INSIDE_JOB, str(int(memory))]
    if not sandboxed:  # a plain process; -I drops the current folder from sys.path, so say where labcode is
        import labcode

        root = str(Path(labcode.__file__).resolve().parent.parent)
        return [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                "from labcode.sandbox import _inside; sys.exit(_inside(sys.argv[2], int(sys.argv[3])))",
                root, str(job_dir), str(int(memory))]
    bwrap = bwrap_path()
    if bwrap is None:
        raise RuntimeError("bubblewrap (bwrap) is not installed: apt install bubblewrap")
    home = os.path.expanduser("~")
    private = [Path(p) for p in PRIVATE_FOLDERS]
    # This Python or labcode may live under a folder that gets a fresh, empty tmpfs (a
    # clone in /tmp): bind those back, read-only, before the hidden paths are covered.
    back = sorted({n for n in _needed() if any(d == n or d in n.parents for d in private)})
    back = [n for n in back if not any(m in n.parents for m in back)]
    return [
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        *[arg for folder in PRIVATE_FOLDERS for arg in ("--tmpfs", folder)],
        *[arg for n in back for arg in ("--ro-bind", str(n), str(n))],
        *_hide_args([home, *hidden]),
        "--ro-bind", str(job_dir), INSIDE_JOB, "--dir", INSIDE_WORK, "--dir", "/tmp/home",
        "--chdir", INSIDE_WORK,
        "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv", "--setenv", "HOME", "/tmp/home", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "LANG", "C.UTF-8", "--setenv", "MPLBACKEND", "Agg", "--setenv", "PYTHONNOUSERSITE", "1",
        *(["--setenv", "LABCODE_QUICK", os.environ["LABCODE_QUICK"]] if "LABCODE_QUICK" in os.environ else []),
        "--", *inner,
    ]


@dataclass
class Finished:
    """What came back from one sandbox: its stdout (at most `limit` bytes) and how it ended."""

    data: bytes
    returncode: int | None
    timed_out: bool
    over_limit: bool
    stderr: str


def run(argv: list[str], seconds: float, stdin: bytes = b"", limit: int = RESULT_LIMIT,
        cwd: str | None = None) -> Finished:
    """Run argv with `stdin`, keep at most `limit` bytes of its stdout, kill its process group after `seconds`."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, cwd=cwd)

    def feed() -> None:
        try:
            process.stdin.write(stdin)
            process.stdin.close()
        except OSError:  # it ended before reading everything
            pass
    chunks: list[bytes] = []
    state = {"size": 0, "over": False}
    errors: list[bytes] = []

    def drain_stdout() -> None:
        while True:
            chunk = process.stdout.read1(1 << 16) if hasattr(process.stdout, "read1") else process.stdout.read(1 << 16)
            if not chunk:
                return
            if state["size"] + len(chunk) > limit:
                state["over"] = True
                _kill(process)
                return
            state["size"] += len(chunk)
            chunks.append(chunk)

    def drain_stderr() -> None:
        kept = 0
        while True:
            chunk = process.stderr.read(1 << 14)
            if not chunk:
                return
            if kept < 1 << 16:
                errors.append(chunk[: (1 << 16) - kept])
                kept += len(chunk)

    readers = [threading.Thread(target=drain_stdout, daemon=True), threading.Thread(target=drain_stderr, daemon=True),
               threading.Thread(target=feed, daemon=True)]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(process)
        process.wait()
    except BaseException:  # Ctrl-C in the grader: take the sandbox down with it
        _kill(process)
        process.wait()
        raise
    for reader in readers:
        reader.join(5)
    return Finished(b"".join(chunks), process.returncode, timed_out, state["over"],
                    b"".join(errors).decode("utf-8", "replace"))


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------
# Inside the sandbox


def _kernel_manager():
    """A kernel manager for this very Python (no kernelspec needed)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="Python (labcode grader)", language="python")

    return AsyncKernelManager(kernel_name="labcode-grader", kernel_spec_manager=ThisPython())


def _client(nb, timeout: float, path: str):
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps error outputs (capped) and drops everything else a cell prints or shows."""

        kept = 0

        def output(self, outs, msg, display_id, cell_index):
            if msg.get("msg_type") != "error" or self.kept > NOTEBOOK_OUTPUT_LIMIT:
                return None
            self.kept += len(str(msg.get("content", "")))
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient(nb, timeout=max(1, int(timeout)), allow_errors=True, km=_kernel_manager(),
                        resources={"metadata": {"path": path}})


def _session(nb, cells: list[int], timeout: float, grading_source: str, grading_seconds: float,
             cases: bytes, cases_path: str) -> dict:
    """Run `cells` of nb in one fresh kernel, then the grading cell. Says how it went.

    The inputs of the checks reach the sandbox's disk only now, after the notebook ran.
    """
    import nbformat
    from jupyter_core.utils import run_sync
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = _client(nb, timeout, INSIDE_WORK if os.path.isdir(INSIDE_WORK) else os.getcwd())
    client.reset_execution_trackers()
    report = {"ended": "ok", "at": None, "errors": 0, "graded": False}
    with client.setup_kernel(cleanup_kc=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        deadline = time.monotonic() + timeout  # the kernel's start is not the student's time
        for index in cells:
            left = deadline - time.monotonic()
            if left <= 0:
                report.update(ended="timeout", at=index)
                break
            client.timeout = max(1, int(left + 0.999))
            try:
                client.execute_cell(nb.cells[index], index)
            except CellTimeoutError:
                report.update(ended="timeout", at=index)
                run_sync(client.km.interrupt_kernel)()
                probe = nbformat.v4.new_code_cell("pass")
                nb.cells.append(probe)
                client.timeout = int(INTERRUPT_GRACE)
                try:
                    client.execute_cell(probe, len(nb.cells) - 1, store_history=False)
                except (CellTimeoutError, DeadKernelError):
                    report["ended"] = "stuck"  # it swallowed the interrupt
                    return report
                break
            except DeadKernelError:
                report.update(ended="died", at=index)
                return report
            report["errors"] += any(out.get("output_type") == "error" for out in nb.cells[index].get("outputs", []))
        with open(cases_path, "wb") as handle:
            handle.write(cases)
        cell = nbformat.v4.new_code_cell(grading_source)
        nb.cells.append(cell)
        client.timeout = max(1, int(grading_seconds))
        try:
            client.execute_cell(cell, len(nb.cells) - 1, store_history=False)
            report["graded"] = True
        except CellTimeoutError:
            report["grading"] = "the grading step ran past its time limit"
        except DeadKernelError:
            report["grading"] = "the kernel died during the grading step"
    return report


def _grading_source(cases_path: str, results_path: str) -> str:
    from importlib.util import find_spec

    runner = find_spec("labcode.checks.calling").origin
    return (
        "def __labcode_grade():\n"
        "    import importlib.util\n"
        f"    spec = importlib.util.spec_from_file_location('_labcode_grader_calling', {runner!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        f"    module.grade_in_kernel(globals(), {cases_path!r}, {results_path!r})\n"
        "__labcode_grade()\n"
    )


def _inside(job_dir: str, memory: int) -> int:
    """The sandbox's first process: run the notebook, grade its functions, write the outcomes to stdout."""
    import resource

    stdin = sys.stdin.buffer.read()
    out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(null, 2)
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, FILE_LIMIT)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass
    import nbformat
    import torch

    job = torch.load(io.BytesIO(stdin), weights_only=True)
    timeout = float(job["timeout"])
    scratch = os.environ.get("TMPDIR", "/tmp")
    results_path = os.path.join(scratch, f"labcode-results-{os.getpid()}.pt")
    cases_path = os.path.join(scratch, f"labcode-cases-{os.getpid()}.pt")
    buffer = io.BytesIO()
    torch.save(job["exercises"], buffer)
    cases = buffer.getvalue()
    source = _grading_source(cases_path, results_path)
    grading_seconds = float(job["grading_seconds"])
    nb = nbformat.read(os.path.join(job_dir, "submission.ipynb"), as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    first = _session(nb, code, timeout, source, grading_seconds, cases, cases_path)
    reply = {"status": "ok", "reason": "", "errors": int(first["errors"]), "outcomes": None}
    report = first
    if first["ended"] == "timeout":
        reply["status"] = "timeout"
        reply["reason"] = (f"cell {first['at']} was still running at the {timeout:g} s limit and was stopped; "
                           "later cells did not run")
    elif first["ended"] in ("died", "stuck"):
        at = first["at"]
        if first["ended"] == "died":
            reply["status"] = "crashed"
            reply["reason"] = f"the kernel died in cell {at} (an exit, a crash or out of memory)"
        else:
            at = at if at is not None else code[-1] + 1
            reply["status"] = "timeout"
            reply["reason"] = (f"cell {at} was still running at the {timeout:g} s limit and ignored the "
                               "interrupt; later cells did not run")
        earlier = [i for i in code if i < at]
        fresh = nbformat.read(os.path.join(job_dir, "submission.ipynb"), as_version=4)
        report = _session(fresh, earlier, timeout, source, grading_seconds, cases, cases_path)
        reply["reason"] += "; the cells before it ran again in a fresh kernel and their functions were graded"
    if report.get("graded") and os.path.exists(results_path):
        try:
            reply["outcomes"] = torch.load(results_path, weights_only=True)
        except Exception as error:  # the notebook may have written over it
            reply["grading"] = f"the outcomes could not be read ({type(error).__name__})"
    elif report.get("grading"):
        reply["grading"] = report["grading"]
    buffer = io.BytesIO()
    torch.save(reply, buffer)
    out.write(buffer.getvalue())
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_inside(sys.argv[1], int(sys.argv[2])))
