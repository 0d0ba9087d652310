"""Where featurisation's task bodies run: Ray tasks (the default, any cluster) or a local process pool
(`cluster.address=processes`: one node without Ray, e.g. a GPU node that has RDKit but not Ray).

Both run the same plain functions (`acml_dist.data.featurize_tasks`) with the same arguments, so the
shards are the same bytes either way (tests/integration/test_featurize_executor.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol


class Executor(Protocol):
    workers: int

    def put(self, value: Any) -> Any: ...
    def submit(self, fn: Callable, *args: Any) -> Any: ...
    def wait_one(self, pending: list) -> list: ...
    def get(self, handle: Any) -> Any: ...
    def close(self) -> None: ...


class RayExecutor:
    """Ray tasks of one CPU each; joins or starts Ray as `ensure_ray` does and shuts down what it started."""

    def __init__(self, cluster: Any) -> None:
        import ray

        from acml_dist.ray_runtime import ensure_ray

        self._ray = ray
        self._started = ensure_ray(cluster)
        configured = int(cluster.featurize_workers) if cluster is not None else 0
        self.workers = configured or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote: dict[Callable, Any] = {}

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def submit(self, fn: Callable, *args: Any) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=1)(fn)
        return self._remote[fn].remote(*args)

    def wait_one(self, pending: list) -> list:
        return self._ray.wait(pending, num_returns=1)[0]

    def get(self, handle: Any) -> Any:
        return self._ray.get(handle)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


class ProcessExecutor:
    """A local process pool of `cluster.featurize_workers` (0: every core)."""

    def __init__(self, cluster: Any) -> None:
        configured = int(cluster.featurize_workers) if cluster is not None else 0
        self.workers = configured or max(1, len(os.sched_getaffinity(0)))
        self._pool = ProcessPoolExecutor(max_workers=self.workers)

    def put(self, value: Any) -> Any:
        return value

    def submit(self, fn: Callable, *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def wait_one(self, pending: list) -> list:
        return list(wait(pending, return_when=FIRST_COMPLETED).done)

    def get(self, handle: Any) -> Any:
        return [h.result() for h in handle] if isinstance(handle, list) else handle.result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def open_executor(cluster: Any) -> Executor:
    address = cluster.get("address") if cluster is not None else None
    return ProcessExecutor(cluster) if address == "processes" else RayExecutor(cluster)
