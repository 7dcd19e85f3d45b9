"""Calling a student's function safely: time limit, caught exceptions, in-place changes.

This module is the only part of the checks that touches the student's function. It is
self-contained on purpose (standard library and torch only, no labcode imports): the
grader (`labcode.grading`) loads this very file, from the grader's own copy of labcode,
into the kernel that ran a submission, calls the student's functions there with
`run_cases`, and sends back plain data: tensors, numbers, strings, lists, dicts. Every
verdict is then reached in the grader's process, so nothing a notebook patches can change
a grade.

The record of one call (an "outcome") is a dict:
    {"status": "ok", "value": <sanitized output>, "seconds": float, "mutated": [names]}
    {"status": "raised", "type": "RuntimeError", "message": "...", "line": "...", ...}
    {"status": "timeout", "seconds": float}
    {"status": "missing"}            (grading only: no function of that name)
    {"status": "forbidden", "calls": [names]}   (the function is one the exercise forbids)

An "ok" or "raised" outcome also lists under "forbidden" the forbidden functions the call
reached: while the student's function runs, a profile hook (sys.setprofile) watches every
Python and C function call for the exercise's forbidden ones, given as
(module, qualified name, shown name) triples: torch's built-in of the same operation,
labcode's own implementation, the answer key.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import sysconfig
import threading
import time
import traceback
from typing import Any, Callable

import torch

TENSOR_KEY = "__labcode_tensor__"
OPAQUE_KEY = "__labcode_opaque__"


class TimeLimitReached(BaseException):
    """Raised inside the student's code when the time limit passes.

    A BaseException, so a student's `except Exception:` does not swallow it.
    """


def sanitize(value: Any, depth: int = 0) -> Any:
    """The output as plain data: tensors become {TENSOR_KEY: cpu tensor, "device": str}.

    Anything that is not a tensor, number, string, None, list, tuple or dict becomes
    {OPAQUE_KEY: type name, "repr": short repr}, so it can be reported but never run.
    """
    if depth > 6:
        return {OPAQUE_KEY: type(value).__name__, "repr": "(nested too deep)"}
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
            return {OPAQUE_KEY: type(value).__name__, "repr": "(tensor subclass)"}
        tensor = value.detach()
        if tensor.is_complex() or tensor.layout != torch.strided:
            return {OPAQUE_KEY: f"tensor ({tensor.dtype}, {tensor.layout})", "repr": ""}
        return {TENSOR_KEY: tensor.cpu().clone(), "device": str(tensor.device)}
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, (int, float, str)):  # subclasses (IntEnum, numpy.float64) as plain values
        plain = bool if isinstance(value, bool) else int if isinstance(value, int) else (
            float if isinstance(value, float) else str)
        return plain(value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return {OPAQUE_KEY: f"numpy.{type(value).__name__}", "repr": repr(value)[:200],
                "item": sanitize(value.item(), depth + 1)}
    if isinstance(value, (list, tuple)):
        items = [sanitize(v, depth + 1) for v in value[:10_000]]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, (set, frozenset)):  # an answer such as {2, 5}: a list, in a fixed order
        return sorted((sanitize(v, depth + 1) for v in list(value)[:10_000]), key=repr)
    if isinstance(value, dict):
        return {str(k): sanitize(v, depth + 1) for k, v in list(value.items())[:1000]}
    try:
        text = repr(value)[:200]
    except Exception:  # a student's class whose repr fails
        text = "(no repr)"
    name = type(value).__module__ + "." + type(value).__qualname__
    return {OPAQUE_KEY: name.replace("builtins.", ""), "repr": text}


def clone(value: Any) -> Any:
    """A copy of value in which every tensor (also inside lists, tuples and dicts) is cloned."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [clone(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clone(v) for v in value)
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    return value


def changed(before: Any, after: Any) -> bool:
    """True when `after` differs from `before` in a tensor's shape, dtype or values, or in structure."""
    if isinstance(before, torch.Tensor):
        return not (
            isinstance(after, torch.Tensor)
            and after.shape == before.shape
            and after.dtype == before.dtype
            and torch.equal(after.detach().cpu(), before.cpu())
        )
    if isinstance(before, (list, tuple)):
        return (type(after) is not type(before) or len(after) != len(before)
                or any(changed(b, a) for b, a in zip(before, after)))
    if isinstance(before, dict):
        return (not isinstance(after, dict) or set(after) != set(before)
                or any(changed(before[k], after[k]) for k in before))
    return False


_LIBRARY_DIRS = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
)
_THIS_FILE = os.path.realpath(__file__) if "__file__" in globals() else ""


def _student_frame(tb: Any) -> tuple[str, str]:
    """('line 7 in f: out = x @ w', 'f') for the last traceback frame in the student's own code."""
    found, name = "", ""
    for frame in traceback.extract_tb(tb):
        path = os.path.realpath(frame.filename) if not frame.filename.startswith("<") else frame.filename
        if path == _THIS_FILE or path.startswith(_LIBRARY_DIRS) or os.sep + "labcode" + os.sep in path:
            continue
        code = (frame.line or "").strip()
        found, name = f"line {frame.lineno} in {frame.name}" + (f": {code}" if code else ""), frame.name
    return found, name


def _student_line(tb: Any) -> str:
    return _student_frame(tb)[0]


_HAS_QUALNAME = sys.version_info >= (3, 11)


def function_key(fn: Any) -> tuple[str, str]:
    """(module, qualified name) of a function, the way the profile hook sees it."""
    return str(getattr(fn, "__module__", None) or ""), str(getattr(fn, "__qualname__", "") or "")


def forbidden_itself(fn: Any, forbidden: list | None) -> list[str]:
    """[shown name] when fn itself is one of the forbidden functions (passed as the answer)."""
    if not forbidden:
        return []
    target = getattr(fn, "__wrapped__", fn)
    keys = {function_key(fn), function_key(target)}
    return [shown for module, qualname, shown in forbidden if (module, qualname) in keys][:1]


def _profiler(forbidden: list, hits: list) -> Callable:
    """A sys.setprofile hook that appends the shown name of each forbidden function called."""
    by_name: dict[str, list[tuple[str, str]]] = {}
    for module, qualname, shown in forbidden:
        by_name.setdefault(qualname, []).append((module, shown))

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            entries = by_name.get(code.co_qualname if _HAS_QUALNAME else code.co_name)
            module = frame.f_globals.get("__name__") if entries else None
        elif event == "c_call":
            entries = by_name.get(getattr(arg, "__qualname__", None))
            module = getattr(arg, "__module__", None) if entries else None
        else:
            return
        if entries:
            for wanted, shown in entries:
                if wanted == module and shown not in hits:
                    hits.append(shown)
    return hook


class WeightsDoNotFit(Exception):
    """A module built from the student's class whose parameters are not the ones the exercise hands in."""


def module_runner(cls: Any) -> Callable:
    """A function (init_args, weights, x) -> output for a module exercise.

    It builds `cls(*init_args)`, loads `weights` (a state dict: names and shapes must be
    exactly the ones given, else WeightsDoNotFit names the differences), moves it to x's
    device, switches it to evaluation mode and returns its output on x, without gradients.
    """
    def run_module(init_args: Any, weights: dict, x: torch.Tensor) -> Any:
        module = cls(*init_args)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"{getattr(cls, '__name__', cls)}(...) should build a torch.nn.Module, "
                            f"got {type(module).__name__}")
        own = module.state_dict()
        lacking = [k for k in weights if k not in own]
        extra = [k for k in own if k not in weights]
        shapes = [f"{k}: given {tuple(weights[k].shape)}, yours {tuple(own[k].shape)}"
                  for k in weights if k in own and tuple(own[k].shape) != tuple(weights[k].shape)]
        if lacking or extra or shapes:
            parts = []
            if lacking:
                parts.append("your module has no " + ", ".join(
                    f"{k} {tuple(weights[k].shape)}" for k in lacking[:4]) + (" ..." if len(lacking) > 4 else ""))
            if extra:
                parts.append("it has " + ", ".join(extra[:4]) + (" ..." if len(extra) > 4 else "")
                             + ", which the given weights do not")
            if shapes:
                parts.append("shapes differ: " + "; ".join(shapes[:3]))
            raise WeightsDoNotFit("the weights do not fit your module: " + "; ".join(parts)
                                  + ". Name the submodules and size them as the exercise says.")
        module.load_state_dict(weights)
        module = module.to(x.device).eval()
        with torch.no_grad():
            return module(x)

    run_module.__wrapped__ = cls  # type: ignore[attr-defined]  (forbidden_itself looks through it)
    run_module.__name__ = str(getattr(cls, "__name__", "module"))
    # NotImplementedError from any method of the student's own class is the stub, not a helper.
    own_names = {run_module.__name__}
    for klass in getattr(cls, "__mro__", ()):
        if getattr(klass, "__module__", None) == getattr(cls, "__module__", None):
            own_names |= {n for n, v in vars(klass).items() if callable(v)}
    run_module.own_names = own_names  # type: ignore[attr-defined]
    return run_module


def call_with_time_limit(fn: Callable, args: tuple, kwargs: dict, seconds: float | None) -> Any:
    """fn(*args, **kwargs), raising TimeLimitReached if it runs past `seconds`.

    On the main thread of a Unix process (a Jupyter kernel, a script, pytest) a SIGALRM
    timer interrupts the student's code and repeats every 50 ms in case the code catches
    the first one. Elsewhere the call runs in a daemon thread and is abandoned when the
    time is up (Python cannot stop a thread; it finishes in the background).
    """
    if seconds is None or seconds == math.inf:
        return fn(*args, **kwargs)
    seconds = max(seconds, 0.01)
    use_signal = (hasattr(signal, "setitimer")
                  and threading.current_thread() is threading.main_thread())
    if use_signal:
        state = {"armed": True}

        def on_alarm(signum: int, frame: Any) -> None:
            if state["armed"]:
                raise TimeLimitReached()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
        try:
            try:
                return fn(*args, **kwargs)
            finally:
                state["armed"] = False
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as error:  # handed back to the caller's thread
            box["error"] = error

    worker = threading.Thread(target=target, daemon=True, name="labcode-check")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeLimitReached()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_case(fn: Callable, args: tuple, kwargs: dict, arg_names: list[str],
             seconds: float | None, forbidden: list | None = None) -> dict:
    """Call fn once on copies of the inputs and record what happened (an outcome dict).

    `forbidden`: (module, qualname, shown) triples; calls to them are listed under "forbidden".
    """
    call_args, call_kwargs = clone(args), clone(kwargs)
    hits: list[str] = []
    previous = sys.getprofile()
    start = time.perf_counter()
    try:
        if forbidden:
            sys.setprofile(_profiler(forbidden, hits))
        try:
            value = call_with_time_limit(fn, call_args, call_kwargs, seconds)
        finally:
            if forbidden:
                sys.setprofile(previous)
    except TimeLimitReached:
        return {"status": "timeout", "seconds": time.perf_counter() - start, "forbidden": hits}
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # the student's code may raise anything, even SystemExit
        try:
            message = str(error)
        except Exception:
            message = "(message could not be shown)"
        line, where = _student_frame(error.__traceback__)
        return {
            "status": "raised",
            "type": type(error).__name__,
            "message": message[:2000],
            "line": line,
            "not_implemented": isinstance(error, NotImplementedError),
            # NotImplementedError from a helper the function calls, not from the function itself
            "in_helper": where if where and where not in getattr(fn, "own_names", {getattr(fn, "__name__", where)})
            else "",
            "seconds": time.perf_counter() - start,
            "forbidden": hits,
        }
    seconds_used = time.perf_counter() - start
    mutated = [arg_names[i] if i < len(arg_names) else f"argument {i + 1}"
               for i, (a, b) in enumerate(zip(args, call_args)) if changed(a, b)]
    mutated += [k for k in kwargs if changed(kwargs[k], call_kwargs.get(k))]
    return {"status": "ok", "value": sanitize(value), "seconds": seconds_used, "mutated": mutated,
            "forbidden": hits}


def run_cases(fn: Callable | None, cases: list, arg_names: list[str],
              seconds: float | None, device: str | None = None, forbidden: list | None = None,
              module: bool = False) -> list[dict]:
    """Outcomes of fn on each (args, kwargs) case, in order, sharing one time budget.

    Stops after the first call that raises, times out or calls a forbidden function: the
    checks report the first failure only. `device` moves tensor inputs there before the call.
    `module`: fn is the student's nn.Module class, run through `module_runner`.
    """
    if fn is None or not callable(fn):
        return [{"status": "missing", "type": type(fn).__name__}]
    itself = forbidden_itself(fn, forbidden)
    if itself:
        return [{"status": "forbidden", "calls": itself}]
    if module:
        fn = module_runner(fn)
    outcomes = []
    used = 0.0
    for args, kwargs in cases:
        if device is not None:
            args, kwargs = to_device(args, device), to_device(kwargs, device)
        left = None if seconds is None else seconds - used
        if left is not None and left <= 0:
            outcomes.append({"status": "timeout", "seconds": 0.0})
            break
        outcome = run_case(fn, args, kwargs, arg_names, left, forbidden)
        used += outcome.get("seconds", 0.0)
        outcomes.append(outcome)
        if outcome["status"] != "ok" or outcome.get("forbidden"):
            break
    return outcomes


def to_device(value: Any, device: str) -> Any:
    """value with every tensor (also inside lists, tuples and dicts) moved to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def grade_in_kernel(namespace: dict, cases_path: str, results_path: str) -> None:
    """Used by the grader inside a submission's kernel: run every requested check's cases.

    `cases_path` holds {exercise: {"functions", "arg_names", "seconds", "cases", "forbidden",
    "module"}} ("module": the function is an nn.Module class, see `module_runner`);
    the first of "functions" the notebook defined is called. The outcomes go to
    `results_path` as {exercise: [outcome, ...]}, written with torch.save so they can be
    read back with weights_only=True (no code runs on loading).
    """
    jobs = torch.load(cases_path, weights_only=True)
    results = {}
    for exercise, job in jobs.items():
        names = list(job["functions"])
        found = [n for n in names if callable(namespace.get(n))]
        fn = namespace.get(found[0]) if found else None
        try:
            outcomes = run_cases(fn, job["cases"], job["arg_names"], job["seconds"],
                                 forbidden=job.get("forbidden"), module=bool(job.get("module")))
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # keep going with the next exercise
            outcomes = [{"status": "raised", "type": type(error).__name__,
                         "message": str(error)[:2000], "line": "",
                         "not_implemented": False, "seconds": 0.0}]
        if outcomes and outcomes[0].get("status") == "missing":
            outcomes[0]["names"] = names
        results[exercise] = {"function": found[0] if found else "", "outcomes": outcomes}
    tmp = results_path + ".tmp"
    torch.save(results, tmp)
    os.replace(tmp, results_path)
    sys.stdout.flush()
