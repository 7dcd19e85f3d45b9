"""The `labcode` command: `labcode assign` makes student notebooks, `labcode grade` grades them.

    labcode assign chapters/conv_solutions.ipynb --out student/
    labcode assign chapters/*_solutions.ipynb --out chapters/ --check    # exit 1 if any is stale
    labcode grade submissions/*.ipynb --source chapters/conv_solutions.ipynb \\
        --out grades.csv --feedback feedback/ --timeout 120 --jobs 2 [--resume]

Each submission runs in a bubblewrap sandbox (labcode.sandbox); without bubblewrap,
grading refuses unless given --no-sandbox.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

GRADE_WARNING = (
    "Each submission runs in a bubblewrap sandbox: read-only system, no network, no access to the other "
    "submissions, the source or the grades. It can still read files the system makes readable to all; "
    "for more, run grading inside a container or a virtual machine with no secrets."
)
UNSANDBOXED_WARNING = (
    "WARNING: --no-sandbox: each submitted notebook runs with your rights on this machine and can read or "
    "change your files, the other submissions and the grades. Every row says NOT SANDBOXED."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labcode", description="Exercise notebooks for the labcode course book.")
    commands = parser.add_subparsers(dest="command", required=True)

    assign = commands.add_parser(
        "assign", help="make student notebooks from solution notebooks",
        description="Replace each '### BEGIN SOLUTION' ... '### END SOLUTION' region with "
                    "raise NotImplementedError(\"Your code here\"), clear outputs, keep metadata. "
                    "A source named X_solutions.ipynb gives X.ipynb.")
    assign.add_argument("sources", nargs="+", type=Path, help="solution notebooks")
    assign.add_argument("--out", required=True, type=Path, help="directory for the student notebooks")
    assign.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a student notebook in --out differs from what assign makes")

    grade = commands.add_parser(
        "grade", help="run submitted notebooks and grade their exercises",
        description="Run each submission in a fresh kernel, then call its functions from the grader's own "
                    "copy of labcode.checks and write one CSV row per submission. " + GRADE_WARNING)
    grade.add_argument("submissions", nargs="+", type=Path, help="submitted notebooks")
    grade.add_argument("--out", required=True, type=Path, help="CSV file to write (atomically)")
    grade.add_argument("--source", type=Path, required=True,
                       help="solution notebook that defines the exercises and points")
    grade.add_argument("--timeout", type=float, default=120.0, help="seconds each notebook may run (default 120)")
    grade.add_argument("--feedback", type=Path, help="directory for one JSON feedback file per submission")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at a time (default 1)")
    grade.add_argument("--resume", action="store_true",
                       help="keep the rows --out already holds and grade only the other submissions")
    grade.add_argument("--memory", type=float, default=8.0,
                       help="GiB of address space each process of a submission may use (default 8)")
    grade.add_argument("--seed", type=int, help="seed for the checks' inputs (default: a fresh secret one)")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run submissions without bubblewrap, with your rights (every row says so)")
    grade.add_argument("--quiet", action="store_true", help="print nothing per submission")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "assign":
            return _assign(args)
        return _grade(args)
    except ImportError as error:
        print(f"labcode {args.command} needs nbformat, nbclient and ipykernel "
              f"(pip install nbformat nbclient ipykernel): {error}", file=sys.stderr)
        return 2


def _assign(args: argparse.Namespace) -> int:
    from labcode import assign

    try:
        if args.check:
            stale = [r for s in args.sources for r in assign.stale_reasons(s, args.out / assign.student_name(s))]
            for reason in stale:
                print(f"stale: {reason}", file=sys.stderr)
            if stale:
                print(f"run: labcode assign {' '.join(map(str, args.sources))} --out {args.out}", file=sys.stderr)
            return 1 if stale else 0
        for path in assign.assign(args.sources, args.out):
            print(f"wrote {path}")
    except (OSError, ValueError) as error:
        print(f"labcode assign: {error}", file=sys.stderr)
        return 2
    return 0


def _grade(args: argparse.Namespace) -> int:
    import logging

    from labcode import grading

    # nbclient leaves a cancelled output poller behind after a timed-out cell; asyncio would log it.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    print(UNSANDBOXED_WARNING if args.no_sandbox else GRADE_WARNING, file=sys.stderr)
    if args.jobs < 1 or args.memory <= 0:
        print(f"labcode grade: --jobs must be >= 1 and --memory > 0, got {args.jobs} and {args.memory:g}",
              file=sys.stderr)
        return 2
    try:
        grades = grading.grade_all(args.submissions, args.out, source=args.source, timeout=args.timeout,
                                   feedback_dir=args.feedback, progress=not args.quiet, jobs=args.jobs,
                                   resume=args.resume, sandboxed=not args.no_sandbox, seed=args.seed,
                                   memory=int(args.memory * (1 << 30)))
    except (OSError, ValueError) as error:
        print(f"labcode grade: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"wrote {args.out} ({len(grades)} submissions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
