"""Hostile submissions (tests/fixtures/hostile/, written by its make.py) graded in the bubblewrap
sandbox: none of them reaches the grades, a classmate, labcode, the network or outlives its
grading, and none loses the work it did before misbehaving (issue 15, items 2 and 6)."""
import csv
import hashlib
import importlib.util
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import nbformat
import pytest

from labcode import grading, sandbox
from labcode.cli import main

HERE = Path(__file__).parent
HOSTILE = HERE / "fixtures" / "hostile"
SOURCE = HERE / "fixtures" / "notebooks" / "exercises_solutions.ipynb"
TIMEOUT = 20

pytestmark = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap is not installed (apt install bubblewrap)")


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers():
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"labcode-hostile-leftover" in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    received = []

    def listen():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                received.append(connection.recv(100))
            except OSError:
                pass

    stop = threading.Event()
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    paths = []
    for name in ["vandal", "exits_at_the_end", "ignores_interrupts", "loud_and_greedy", "borrowed_and_renamed",
                 "patches_torch_save", "blank"]:
        target = folder / f"{name}.ipynb"
        text = (HOSTILE / f"{name}.ipynb").read_text()
        target.write_text(text.replace("PORT = 1 ", f"PORT = {server.getsockname()[1]} "))
        paths.append(target)
    classmate = folder / "=classmate.ipynb"  # a spreadsheet would read this name as a formula
    shutil.copyfile(SOURCE, classmate)
    paths.insert(1, classmate)
    classmate_before = digest(classmate)
    installed = [importlib.util.find_spec(m).origin for m in ("labcode.checks.calling", "labcode.checks.core")]
    installed_before = [digest(p) for p in installed]
    out = folder / "grades" / "grades.csv"
    assert main(["grade", *map(str, paths), "--source", str(SOURCE), "--out", str(out), "--timeout", str(TIMEOUT),
                 "--jobs", "2", "--quiet", "--feedback", str(folder / "feedback")]) == 0
    written = out.read_text()
    time.sleep(6)  # a process left behind would now write over the grades
    stop.set()
    listener.join(5)
    server.close()
    with open(out, newline="") as handle:
        rows = {Path(row["file"].lstrip("'")).stem: row for row in csv.DictReader(handle)}
    return {"rows": rows, "csv": out, "written": written, "received": received, "classmate": classmate,
            "classmate_before": classmate_before, "installed": installed, "installed_before": installed_before}


def points(row):
    return [float(row[c]) for c in ("conv_output_size", "padding_amount", "max_pool2d", "total")]


def test_the_grades_outlive_every_submission(batch):
    assert batch["csv"].read_text() == batch["written"]
    assert "forged" not in batch["written"]
    assert leftovers() == []


def test_a_vandal_gets_nothing_and_harms_no_one(batch):
    assert points(batch["rows"]["vandal"]) == [0, 0, 0, 0]
    assert points(batch["rows"]["=classmate"]) == [2, 1, 1, 4]
    assert Path(batch["classmate"]).exists() and digest(batch["classmate"]) == batch["classmate_before"]
    assert [digest(p) for p in batch["installed"]] == batch["installed_before"]
    assert batch["received"] == []  # no network
    assert points(batch["rows"]["blank"]) == [0, 0, 0, 0]  # graded after the vandal: labcode unchanged


def test_file_names_that_look_like_formulas_are_escaped(batch):
    assert "\n'=classmate.ipynb" not in batch["written"]  # the full path starts with /
    rows = list(csv.reader(batch["written"].splitlines()))
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert grading._escape("=1+1") == "'=1+1" and grading._escape("-2") == "'-2" and grading._escape("ok") == "ok"


def test_an_exit_in_the_last_cell_keeps_every_function(batch):
    row = batch["rows"]["exits_at_the_end"]
    assert row["status"] == "crashed" and points(row) == [2, 1, 1, 4], row
    assert "fresh kernel" in row["reason"]


def test_a_cell_that_swallows_interrupts_keeps_the_functions_before_it(batch):
    row = batch["rows"]["ignores_interrupts"]
    assert row["status"] == "timeout" and "cell 4" in row["reason"], row
    assert points(row) == [2, 0, 0, 2]


def test_huge_output_and_memory_are_capped(batch):
    row = batch["rows"]["loud_and_greedy"]
    assert float(row["conv_output_size"]) == 2, row  # defined before the output and the allocation
    assert row["status"] in ("ok", "timeout", "crashed"), row


def test_borrowed_answers_get_zero_and_a_renamed_function_counts(batch):
    row = batch["rows"]["borrowed_and_renamed"]
    assert points(row) == [0, 1, 0, 1], row
    assert "forbids" in row["reason"] and "conv_output_size" in row["reason"] and "max_pool2d" in row["reason"]


def test_patching_torch_save_in_the_kernel_earns_nothing(batch):
    assert points(batch["rows"]["patches_torch_save"]) == [0, 0, 0, 0]


def test_the_csv_and_feedback_have_the_users_permissions(batch):
    umask = os.umask(0)
    os.umask(umask)
    assert batch["csv"].stat().st_mode & 0o777 == 0o666 & ~umask
    feedback = next((batch["csv"].parent.parent / "feedback").iterdir())
    assert feedback.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_sandbox_hides_the_grader_and_its_files(tmp_path):
    secret = tmp_path / "grades"
    secret.mkdir()
    (secret / "grades.csv").write_text("secret")
    argv = sandbox.command(tmp_path, hidden=[secret])
    inner = argv.index("--")
    probe = argv[:inner + 1] + ["/bin/sh", "-c", f"cat {secret}/grades.csv; ls /proc | grep -c '^[0-9]'; "
                                "touch /usr/x 2>&1; id -u"]
    finished = sandbox.run(probe, 30)
    text = finished.data.decode()
    assert "secret" not in text and "Read-only file system" in finished.stderr + text
    # only the sandbox's own processes: bwrap's init (pid 1), sh, ls and grep; the host has hundreds
    assert int(text.split()[0]) <= 4


def test_output_is_read_with_a_byte_budget():
    finished = sandbox.run(["/bin/sh", "-c", "yes | head -c 100000000"], 30, limit=1 << 20)
    assert finished.over_limit and len(finished.data) <= 1 << 20


def test_without_bubblewrap_grading_refuses_unless_told(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    blank = tmp_path / "blank.ipynb"
    shutil.copyfile(HOSTILE / "blank.ipynb", blank)
    out = tmp_path / "g.csv"
    assert main(["grade", str(blank), "--source", str(SOURCE), "--out", str(out), "--quiet"]) == 2
    assert "--no-sandbox" in capsys.readouterr().err and not out.exists()
    assert main(["grade", str(blank), "--source", str(SOURCE), "--out", str(out), "--quiet", "--no-sandbox",
                 "--timeout", str(TIMEOUT)]) == 0
    row = next(csv.DictReader(out.open()))
    assert "NOT SANDBOXED" in row["reason"] and row["total"] == "0"
