"""Where the data stages' task bodies run (featurisation, the subset stages of data/subset_stage.py): Ray
tasks (the default, any cluster) or a local process pool (`cluster.address=processes`: one node without
Ray, e.g. a GPU node that has RDKit but not Ray).

Both run the same plain functions with the same arguments, so the outputs are the same bytes either way
(tests/integration/test_featurize_executor.py, tests/integration/test_subset_stage.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Optional, Protocol


class Executor(Protocol):
    workers: int

    def put(self, value: Any) -> Any: ...
    def submit(self, fn: Callable, *args: Any) -> Any: ...
    def wait_one(self, pending: list) -> list: ...
    def get(self, handle: Any) -> Any: ...
    def close(self) -> None: ...


def _configured(cluster: Any, workers: Optional[int]) -> int:
    """`workers` when given (a stage's own setting), else `cluster.featurize_workers`; 0: one per CPU."""
    if workers is not None:
        return int(workers)
    return int(cluster.featurize_workers) if cluster is not None else 0


class RayExecutor:
    """Ray tasks of one CPU each; joins or starts Ray as `ensure_ray` does and shuts down what it started."""

    def __init__(self, cluster: Any, workers: Optional[int] = None) -> None:
        import ray

        from acml_dist.ray_runtime import ensure_ray

        self._ray = ray
        self._started = ensure_ray(cluster)
        configured = _configured(cluster, workers)
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
    """A local process pool of `workers` or `cluster.featurize_workers` (0: every core)."""

    def __init__(self, cluster: Any, workers: Optional[int] = None) -> None:
        configured = _configured(cluster, workers)
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


def open_executor(cluster: Any, workers: Optional[int] = None) -> Executor:
    """The executor `cluster.address` names; `workers` (when given) overrides `cluster.featurize_workers`."""
    address = cluster.get("address") if cluster is not None else None
    if address == "processes":
        return ProcessExecutor(cluster, workers)
    return RayExecutor(cluster, workers)
