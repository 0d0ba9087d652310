"""Schemas of the spectrum stages: `acml nmr-predict` (predicted 13C / 1H NMR for a dataset subset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from acml_dist.config.cluster import ClusterConfig


@dataclass
class NmrPredictJob:
    name: str = "demo"
    shards: Optional[str] = None  # featurised dataset dir; None: <shards_root>/<name>
    shards_root: str = "shards"
    overwrite: bool = False  # clear earlier predictions of another configuration
    # The subset: molecules of these splits in shard order, only those in keys_file (one key a line) when
    # given, the first `limit` of them (0 or null: all). csp5 runs ~5 molecules/s per nucleus per core.
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    limit: Optional[int] = 5000
    keys_file: Optional[str] = None
    nuclei: list[str] = field(default_factory=lambda: ["13C", "1H"])
    chunk_size: int = 50  # molecules per Ray task (the unit of resume)
    workers: int = 0  # tasks in flight = 2 x workers; 0: one per CPU of the Ray cluster (of this node with
    # cluster.address=processes: a local process pool, no Ray)
    # 1H bins over [h1_low, h1_high) ppm; 13C is fixed as in CReSS (4,000 bins, -50..350 ppm)
    h1_bins: int = 1200
    h1_low: float = 0.0
    h1_high: float = 12.0
    max_heavy_atoms: int = 0  # > 0: reject bigger molecules before embedding (skip_heavy)
    seed: Optional[int] = None  # None: csp5's per-molecule geometry seed (deterministic)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass
class ImportSpectraJob:
    """`acml import-spectra`: experimental spectrum files paired to a featurised dataset's molecules."""

    name: str = "demo"
    shards: Optional[str] = None  # featurised dataset dir; None: <shards_root>/<name>
    shards_root: str = "shards"
    files: list[str] = field(default_factory=list)  # .mgf .msp .jdx/.dx/.jcamp .sdf (NMRShiftDB fields)
    modality: str = "ms"  # output name: modalities/<modality>/ (e.g. ms, gcms, lcms, nmr13c_exp)
    kind: Optional[str] = None  # records kept and bins used: ms | nmr13c | nmr1h; None: the modality name
    pair_by: list[str] = field(default_factory=lambda: ["inchikey", "smiles", "id"])  # tried in this order
    chunk_size: int = 1000
    peak_rel_height: float = 0.05  # continuous JCAMP traces: peaks above this fraction of the maximum
    h1_bins: int = 1200
    h1_low: float = 0.0
    h1_high: float = 12.0
    mz_min: float = 0.0
    mz_max: float = 1000.0
    mz_resolution: float = 1.0  # Da per bin (1.0: nominal mass, GC-MS; e.g. 0.01 for LC-MS)


@dataclass
class PretrainTeacherJob:
    """`acml pretrain-teacher <modality>`: a spectrum teacher trained CReSS-style (contrastive) against a
    frozen SMILES teacher's cached embeddings, tracked and registered in MLflow as acml-teacher-<name>."""

    modality: str = "nmr13c"  # nmr13c (CReSS encoder) | nmr1h | ms (1-D conv encoder) | image; positional
    name: str = "demo"
    shards: Optional[str] = None  # featurised dataset dir; None: <shards_root>/<name>
    shards_root: str = "shards"
    spectra: Optional[str] = None  # the modalities/<spectra> output to train on; None: the modality name
    target: str = "rxnfp"  # the frozen SMILES teacher whose cached embeddings are the targets (acml embed)
    teacher_name: Optional[str] = None  # registered as acml-teacher-<teacher_name>; None: the spectra name
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2  # held out (random, seeded): R@1 of the trained teacher and its untrained twin
    pool: int = 1000  # retrieval pool size for held-out R@1
    out_dim: int = 768
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0: torch's default
    output: Optional[str] = None  # weights, teacher.json, plot; None: <runs_root>/teacher-<teacher name>
    runs_root: str = "runs"
    register: bool = True  # register in the MLflow model registry
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<runs_root>/mlflow.db
    experiment: str = "acml-teachers"
    # modality image: the Img2Mol-style CNN (teachers/image_cnn.py) regressing the target's embedding (its
    # output dimension is the target's; out_dim is for spectra); trained on modalities/<spectra or image>
    image_width: int = 32  # channels of the first conv block (x2 per block)
    image_resolution: int = 96  # px the stored 224x224 depictions are downsampled to (224: Img2Mol's)
    image_blocks: int = 3
    image_convs_per_block: int = 1
    image_loss: str = "cosine_nce"  # cosine_nce | cosine | mse (training/image_pretrain.py)
    nce_weight: float = 1.0
    temperature: float = 0.05
    augment: bool = True  # online rotation, scale and line width
    # spectrum teachers: online augmentation of each batch's peak lists (training/nmr_pretrain.jitter_peaks)
    # each peak moved by a random offset of up to this much, in the spectrum's axis unit (ppm, m/z; turned
    # into bins with the manifest's binning); None: the modality's default (training/teacher_job.PEAK_SHIFT:
    # 13C 1 ppm, 1H 0.1 ppm, MS 0)
    peak_shift: Optional[float] = None
    peak_drop: float = 0.0  # each peak dropped with this probability
    # batches of isomers: each epoch's shuffle keeps molecules of one formula together, so the contrast is
    # between spectra of isomers (hard negatives; training/pair_training.fit_pairs `groups`)
    isomer_batches: bool = False
    # DeepSpeed data parallel: one rank here, N under `deepspeed --num_gpus N --no_local_rank --module
    # acml_dist.cli pretrain-teacher ...`; batch_size is per rank (each rank contrasts its own batch)
    device: str = "auto"  # auto: each rank's GPU when there is one, else the CPU | cpu: the CPU even so
    zero_stage: int = 0  # DeepSpeed ZeRO 0-2 (small teachers: 0, a full optimiser per rank)
