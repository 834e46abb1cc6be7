"""Run a function as the N ranks of a distributed job, each rank in its own process with
detcore's Python package: what determined's harness/tests/parallel.py does with threads.

    results = ranks.run(2, do_test, arg)     # do_test(rank, dist, arg) in 2 processes

`do_test` must be a module-level function (processes are spawned, so it is imported by name);
`dist` is a `detcore.DistributedContext` for the rank (chief on 127.0.0.1, a free port) to pass
to `detcore.init(distributed=dist)`. Return values must be picklable. A rank that raises fails
the test with its traceback; a rank that does not finish within `timeout` fails it too (every
process is killed)."""
import contextlib
import multiprocessing
import queue
import socket
import time
import traceback
from typing import Any, Callable, List, Optional

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(fn: Callable, rank: int, size: int, local_size: int, port: int, args: tuple, q: Any) -> None:
    try:
        import detcore

        dist = detcore.DistributedContext(
            rank=rank, size=size, local_rank=rank % local_size, local_size=local_size,
            cross_rank=rank // local_size, cross_size=size // local_size, chief_ip="127.0.0.1", port=port,
            connect_timeout=60, collective_timeout=60,
        )
        q.put((rank, True, fn(rank, dist, *args)))
    except BaseException as e:  # noqa: B902 - reported to the parent, whatever it is
        q.put((rank, False, "".join(traceback.format_exception(type(e), e, e.__traceback__))))


def run(size: int, fn: Callable, *args: Any, local_size: Optional[int] = None, timeout: float = 180) -> List[Any]:
    """`fn(rank, dist, *args)` in `size` processes; the ranks' return values in rank order."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    ls = local_size or size
    procs = [ctx.Process(target=_child, args=(fn, r, size, ls, port, args, q), daemon=True) for r in range(size)]
    for p in procs:
        p.start()
    results, errors = {}, {}
    deadline = time.monotonic() + timeout
    try:
        while len(results) + len(errors) < size:
            try:
                rank, ok, value = q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                missing = [r for r in range(size) if r not in results and r not in errors]
                pytest.fail(f"rank(s) {missing} did not finish within {timeout:.0f} s; errors: {errors}")
            (results if ok else errors)[rank] = value
    finally:
        for p in procs:
            p.join(timeout=10)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    if errors:
        pytest.fail("\n".join(f"rank {r} failed:\n{tb}" for r, tb in sorted(errors.items())), pytrace=False)
    return [results[r] for r in range(size)]


@contextlib.contextmanager
def raises_when(cond: bool, exc: Any, match: Optional[str] = None):
    """`pytest.raises(exc, match=match)` where `cond`, else no exception allowed."""
    if cond:
        with pytest.raises(exc, match=match):
            yield
    else:
        yield
