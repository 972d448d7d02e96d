"""Evaluation back-ends: where a generation's candidates are evaluated (this process, local processes, Ray).

The search engine calls `backend.map(evaluate, genomes)` once per generation, so a back-end only has to run
one function over a list and give the results back in input order. Results never depend on the back-end:
the engine, not the back-end, owns every random choice.

The "process" and "ray" back-ends send `fn` to other processes, so it must be picklable: a module-level
function, or an instance of a module-level class with `__call__` (closures and lambdas are not). Processes
are started with "forkserver" (Linux) or "spawn", never "fork", so torch and its threads are safe; with
"spawn" the calling script needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import socket
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from xbarforge.errors import XbarforgeError

T = TypeVar("T")
R = TypeVar("R")

KINDS = ("local", "process", "ray")


@runtime_checkable
class Backend(Protocol):
    """Runs `fn` over `items`, results in input order; `close` frees workers (also a context manager)."""

    name: str

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...


class _Base:
    """Context-manager plumbing shared by the back-ends."""

    name = "base"

    def close(self) -> None:
        """Nothing to free by default."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LocalBackend(_Base):
    """A plain loop in this process: no start-up cost, no pickling; the right choice for cheap evaluations."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(item) for item in items]


# ---- process pool ----

_WORKER_FN: tuple[str, Callable[[Any], Any]] | None = None  # the last function a worker unpickled (key, fn)


def _run_chunk(key: str, payload: bytes, items: list[Any]) -> list[Any]:
    """Worker side: unpickle `fn` once per map call (chunks of one call share the key), run it over a chunk."""
    global _WORKER_FN
    if _WORKER_FN is None or _WORKER_FN[0] != key:
        _WORKER_FN = (key, pickle.loads(payload))
    fn = _WORKER_FN[1]
    return [fn(item) for item in items]


def _context() -> multiprocessing.context.BaseContext:
    """forkserver where the platform has it (fast start, no forked torch state), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods and sys.platform != "darwin"
                                       else "spawn")


class ProcessBackend(_Base):
    """A pool of local worker processes, started on the first map and reused until `close`.

    `fn` is pickled once per map call and sent with each chunk (about two chunks per worker), not with each
    item, so a large evaluator (a supernet, say) crosses the pipe a few times per generation only."""

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = int(workers) if workers is not None else (os.cpu_count() or 1)
        if self.workers < 1:
            raise XbarforgeError(f"process back-end: workers must be >= 1, got {self.workers}")
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        items = list(items)
        if not items:
            return []
        try:
            payload = pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickle raises several types (PicklingError, AttributeError, TypeError)
            raise XbarforgeError(f"process back-end: the evaluate function cannot be pickled ({exc}); use a"
                                 " module-level function or an instance of a module-level class") from None
        key = hashlib.sha256(payload).hexdigest()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_context())
        n_chunks = min(len(items), 2 * self.workers)
        bounds = [len(items) * i // n_chunks for i in range(n_chunks + 1)]
        futures = [self._pool.submit(_run_chunk, key, payload, items[a:b])
                   for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        out: list[R] = []
        for f in futures:
            out.extend(f.result())
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ---- Ray ----

_RAY_CALL: Any = None  # the remote wrapper, made once ray is imported


def _ray_call_fn() -> Any:
    global _RAY_CALL
    if _RAY_CALL is None:
        import ray

        @ray.remote
        def _call(fn: Callable[[Any], Any], item: Any) -> Any:
            return fn(item)

        _RAY_CALL = _call
    return _RAY_CALL


def _unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why a "host:port" (or "ray://host:port") address takes no TCP connection, or None if it does or the
    address has no port ("auto"). Ray itself retries an unreachable address for minutes before failing."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RayBackend(_Base):
    """Ray tasks, one per candidate, on a cluster at `address` or on a local one started here (`workers`
    CPUs). `fn` goes to the object store once per map call. Ray is imported only when this is made."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise XbarforgeError("ray is not installed: pip install 'xbarforge[ray]'") from None
        if workers is not None and workers < 1:
            raise XbarforgeError(f"ray back-end: workers must be >= 1, got {workers}")
        self._ray = ray
        self.address = address or None
        self._started = False
        if ray.is_initialized():
            return  # the caller's own session: use it and leave it running
        kwargs: dict[str, Any] = {"address": self.address, "ignore_reinit_error": True,
                                  "include_dashboard": False, "log_to_driver": False}
        if self.address is not None and (why := _unreachable(self.address)) is not None:
            raise XbarforgeError(f"cannot connect to the Ray cluster at {self.address}: {why}")
        if self.address is None and workers is not None:
            kwargs["num_cpus"] = int(workers)
        try:
            ray.init(**kwargs)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError, ... by situation
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
            raise XbarforgeError(f"cannot connect to {where}: {_first_line(exc)}") from None
        self._started = True

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        items = list(items)
        if not items:
            return []
        call = _ray_call_fn()
        ref = self._ray.put(fn)
        return list(self._ray.get([call.remote(ref, item) for item in items]))

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_backend(kind: str = "local", workers: int | None = None, ray_address: str | None = None) -> Backend:
    """The back-end called `kind`: "local", "process" (workers default: all CPUs) or "ray"."""
    if kind == "local":
        return LocalBackend()
    if kind == "process":
        return ProcessBackend(workers)
    if kind == "ray":
        return RayBackend(workers, ray_address)
    raise XbarforgeError(f"unknown back-end {kind!r}: choose one of {', '.join(KINDS)}")
