"""The run-time set-up of Ray that every Ray stage shares (featurise, embed, nmr-predict, the pipeline):
reuse an initialised Ray, join a running cluster, or start an embedded local one sized by the config.

Sits under the stages like `config` and `log` (it imports Ray only when called), so the data, teacher and
pipeline layers all reach it without importing one another."""

from __future__ import annotations

import os
from typing import Any

from acml_dist.log import get_logger

log = get_logger("ray")


def ensure_ray(cluster: Any, log_to_driver: bool = False) -> bool:
    """Reuse an initialised Ray, join `cluster.address` (or the cluster of a `ray job submit`, which sets
    RAY_ADDRESS), or start an embedded local one sized by the config; True when we started it."""
    import ray

    if ray.is_initialized():
        return False
    address = cluster.get("address") if cluster is not None else None
    if address in (None, "", "local") and os.environ.get("RAY_ADDRESS"):
        address = "auto"
    if address in (None, "", "local"):
        ray.init(
            num_cpus=cluster.get("num_cpus") if cluster is not None else None,
            object_store_memory=cluster.get("object_store_memory") if cluster is not None else None,
            include_dashboard=False,
            log_to_driver=log_to_driver,
            configure_logging=False,
        )
    else:
        ray.init(address=address, log_to_driver=log_to_driver, configure_logging=False)
    log.info("Ray resources: %s", ray.cluster_resources())
    return True
