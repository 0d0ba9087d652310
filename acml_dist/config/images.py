"""Schema of `acml depict`: preprocessed 2-D depictions (the `image` modality) for a dataset subset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from acml_dist.config.cluster import ClusterConfig


@dataclass
class DepictJob:
    name: str = "demo"
    shards: Optional[str] = None  # featurised dataset dir; None: <shards_root>/<name>
    shards_root: str = "shards"
    overwrite: bool = False  # clear earlier depictions of another configuration
    # The subset: molecules of these splits in shard order (only those in keys_file when given), the first
    # `limit` of them (0 or null: all). RDKit draws ~100-130 depictions/s per core.
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    limit: Optional[int] = 50000
    keys_file: Optional[str] = None
    modality: str = "image"  # output: modalities/<modality>/
    size: int = 224  # drawn and preprocessed at size x size (Img2Mol: 224)
    border: int = 15  # white border of Img2Mol's fit_image, px before resizing back to `size`
    store_size: int = 224  # stored resolution (uint8); < size downsamples (Lanczos) to save disk
    max_heavy_atoms: int = 0  # > 0: reject bigger molecules (unreadable at 224 px)
    chunk_size: int = 500  # molecules per Ray task (the unit of resume)
    workers: int = 0  # tasks in flight = 2 x workers; 0: one per CPU of the Ray cluster (of this node with
    # cluster.address=processes: a local process pool, no Ray)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
