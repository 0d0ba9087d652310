"""Schema of the `data` group: a molecule source, how it is standardised, filtered, split and sharded.

The same schema serves the pretraining corpus (featurize) and a labelled dataset (finetune:
`data.path`, `data.smiles_column`, `data.targets`, `data.task`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class StandardizeConfig:
    largest_fragment: bool = True  # keep the largest organic fragment (salts, solvents stripped)
    neutralize: bool = True
    min_heavy_atoms: int = 2
    max_heavy_atoms: int = 100
    # Empty list: any element. Otherwise symbols allowed (e.g. [C, N, O, S, F, Cl, Br, I, P, H]).
    allowed_elements: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    # Named source (moses | moses_test | nci5k | esol | freesolv | lipophilicity | bbbp | ... | file).
    source: str = "moses"
    path: Optional[str] = None  # file, folder or glob; overrides the named source's files
    format: str = "auto"  # auto | smi | csv | tsv | sdf | pubchem_smiles
    smiles_column: str = "smiles"
    id_column: Optional[str] = None
    id_prefix: Optional[str] = None  # e.g. "pubchem"; default: source name
    limit: Optional[int] = None  # read at most this many records (subsets for demos)
    # Labelled datasets (finetune)
    targets: list[str] = field(default_factory=list)
    # regression | classification | auto: classification where every target has two distinct labels
    task: str = "auto"
    # The positive word of a two-word classification label (e.g. "penetrating"); known pairs (yes/no,
    # active/inactive, ..., X+/X-) need none.
    positive_label: Optional[str] = None
    # Processing
    standardize: StandardizeConfig = field(default_factory=StandardizeConfig)
    dedupe_by: str = "inchikey"  # inchikey | smiles
    exclude: list[str] = field(default_factory=list)  # dataset names or files of InChIKeys to remove
    # featurisation: scaffold | random; `acml finetune` also scaffold_balanced, and column: the file's own
    # split, each row's part (train / valid / test) named in its `split_column`
    split: str = "scaffold"
    split_column: str = "split"
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 0
    samples_per_shard: int = 1000
    images: bool = False
    # Up to this many stereoisomers written beside each molecule whose stereocentres or double bonds are
    # unassigned (0: none). A corpus without stereo (MOSES) never trains the encoder's chirality rows, and
    # datasets downstream carry tags (FreeSolv's scaffold test split: 21.5% of molecules). The isomers share
    # their parent's split group; the counts gain `stereoisomers` (read + stereoisomers = written + rejected
    # + duplicates + excluded). Corpus featurisation only: labelled datasets (finetune) are read as they are.
    stereoisomers: int = 0
    chunk_size: int = 20000  # records per Ray work unit
