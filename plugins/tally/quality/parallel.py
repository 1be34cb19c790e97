"""Run a gate's independent validations in forked worker processes, one per item, ``workers`` at a time.

A gate task validating many datasets (the raw gate: every source dataset) is CPU-bound in Great
Expectations' pure-Python machinery, one core at a time. Forking keeps what the task process
already holds (GX imported and warmed up by the preloading scheduler, the GX context, compiled
Data Docs templates), so a worker starts at once; each returns its results (pickled through a
file) and the Data Docs pages it rendered, which the parent writes with its own index update
(``tally.quality.docs.batch_publish``).

Only for work that reads local files: the AWS SDK behind pyarrow's S3 filesystem is not safe to
use in a forked child. Callers fall back to running the items in-process.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WorkerFailed(RuntimeError):
    """A worker raised (the gate could not run): its error and traceback."""


def workers_default() -> int:
    """``$TALLY_GATE_WORKERS``, else the machine's cores (at most 4)."""
    env = os.environ.get("TALLY_GATE_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(4, os.cpu_count() or 1))


def fork_each(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(item) for item in items]``, each call in a child forked from this process, at most
    ``workers`` at once, in the given order (put the biggest first). Data Docs pages the children
    publish join this process's pending batch. A child that raises makes this raise
    ``WorkerFailed`` once the running children are done."""
    from tally.quality import docs

    results: dict[int, R] = {}
    running: dict[int, tuple[int, str]] = {}
    errors: list[str] = []
    todo = list(enumerate(items))
    with tempfile.TemporaryDirectory(prefix="tally-gate-") as tmp:
        while todo or running:
            while todo and len(running) < workers and not errors:
                index, item = todo.pop(0)
                out = os.path.join(tmp, f"{index}.pickle")
                pid = os.fork()
                if pid == 0:  # the worker
                    code = 0
                    try:
                        before = docs.pending_count()
                        value = fn(item)
                        payload: tuple = ("ok", value, docs.pending_since(before))
                    except BaseException as exc:  # report everything to the parent
                        payload, code = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", []), 1
                    try:
                        with open(out, "wb") as fh:
                            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
                    finally:
                        os._exit(code)
                running[pid] = (index, out)
            if not running:
                break
            pid, _status = os.waitpid(-1, 0)
            if pid not in running:
                continue
            index, out = running.pop(pid)
            try:
                with open(out, "rb") as fh:
                    kind, value, pages = pickle.load(fh)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                errors.append(f"worker for item {index} died without a result ({exc})")
                continue
            if kind == "ok":
                results[index] = value
                docs.add_pending(pages)
            else:
                errors.append(value)
    if errors:
        raise WorkerFailed("; ".join(errors))
    return [results[i] for i in range(len(items))]
