"""`data.stereoisomers`: featurisation writes assigned stereoisomers beside molecules with unassigned
stereo, keeps them in their parent's split, checks them against the leakage list, and its counts add up."""

from __future__ import annotations

from pathlib import Path

import pytest

from acml_dist.chem.standardize import scaffold_smiles, standardize, stereoisomers
from acml_dist.config import load_config
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.shards import load_graph_shard, read_manifest, shard_samples

pytestmark = pytest.mark.integration

ROWS = [
    ("one_centre", "CC(O)CC"),  # 2 isomers
    ("assigned", "C[C@H](N)C(=O)O"),  # nothing unassigned: no isomer
    ("achiral", "c1ccccc1O"),
    ("two_centres", "OC(Cl)C(F)CC"),  # 4 isomers, 2 kept (limit)
    ("alkene", "CC=CCO"),  # E and Z
    ("later_isomer", "C[C@@H](O)CC"),  # the same molecule as an isomer of one_centre: a duplicate
    ("decalol", "OC1CCC2CCCCC2C1"),  # 8 isomers, 2 kept; their own scaffolds carry stereo, the parent's not
]
# fused rings of four other scaffolds, 2 isomers kept each: with their own (stereo) scaffolds as split groups,
# some of these isomers would land in another split than their parent
FUSED = ["OC1CCC2CCCC2C1", "OC1CC2CCCC2C1", "OC1CCC2CCCCCC2C1", "OC1CCC2CCC2C1"]
ROWS += [(f"fused{i}", smi) for i, smi in enumerate(FUSED)]
LIMIT = 2


def run(out: Path, inputs: Path, stereo: int) -> dict:
    cfg = load_config(
        "featurize",
        [
            f"output={out}",
            f"input={inputs / 'mols.csv'}",
            "data.id_column=id",
            f"data.exclude=[{inputs / 'leak.txt'}]",
            f"data.stereoisomers={stereo}",
            "data.split_fractions=[0.34,0.33,0.33]",  # isomers in another group than the parent would scatter
            "data.chunk_size=3",
            "data.samples_per_shard=4",
            "cluster.address=processes",
            "cluster.featurize_workers=2",
        ],
    )
    return featurize_corpus(cfg)


def samples(root: Path) -> dict[str, tuple[str, dict]]:
    """key -> (split, sample) over every shard."""
    manifest = read_manifest(root)
    out = {}
    for split, s in manifest["splits"].items():
        for entry in s["shards"]:
            for sample in shard_samples(load_graph_shard(root, entry)):
                out[sample["key"]] = (split, sample)
    return out


def test_stereoisomers_are_written_counted_split_with_their_parent_and_checked_for_leakage(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "mols.csv").write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in ROWS))
    leaked = stereoisomers(standardize("CC=CCO"), LIMIT)[0]  # one alkene isomer is in a property set
    (inputs / "leak.txt").write_text(leaked.smiles + "\n")

    manifest = run(tmp_path / "stereo", inputs, LIMIT)
    c = manifest["counts"]
    # 2 (one_centre) + 2 of 4 (two_centres) + 2 (alkene) + 2 of 8 (decalol) + 4 x 2 (fused) isomers; the
    # alkene's leaked isomer is excluded; later_isomer repeats an isomer written earlier
    assert c["stereoisomers"] == 16
    assert c["excluded"] == 1 and c["duplicates"] == 1 and c["rejected"] == 0
    assert c["read"] + c["stereoisomers"] == c["written"] + c["rejected"] + c["duplicates"] + c["excluded"]
    assert c["written"] == 11 + 15 - 1

    by_key = samples(tmp_path / "stereo")
    assert len(by_key) == c["written"]
    isomers = {k: v for k, v in by_key.items() if "-stereo" in k}
    assert len(isomers) == 15
    parents = {v[1]["meta"]["inchikey"]: (k, v[0]) for k, v in by_key.items() if "-stereo" not in k}
    for key, (split, sample) in isomers.items():
        parent_key, parent_split = parents[sample["meta"]["stereo_parent"]]
        assert key.startswith(parent_key + "-stereo")
        assert split == parent_split  # no isomer in another split than its parent
        assert sample["meta"]["scaffold"] == by_key[parent_key][1]["meta"]["scaffold"]
        assert "@" in sample["smiles"] or "/" in sample["smiles"] or "\\" in sample["smiles"]
        assert sample["smiles"] != leaked.smiles
    tagged = [k for k, (_, s) in isomers.items() if (s["arrays"]["ogb_x"][:, 1] != 0).any()]
    assert len(tagged) == 14  # the centres' isomers carry CW/CCW in the graph; the alkene's do not
    assert {by_key[k][1]["smiles"] for k in isomers} == {
        r.smiles
        for smi in ("CC(O)CC", "OC(Cl)C(F)CC", "CC=CCO", "OC1CCC2CCCCC2C1", *FUSED)
        for r in stereoisomers_of(smi)
    } - {leaked.smiles}
    # the split group is the parent's scaffold, not the isomer's own (which differs here)
    decalols = [
        s
        for _, s in isomers.values()
        if s["meta"]["stereo_parent"] == standardize("OC1CCC2CCCCC2C1").inchikey
    ]
    assert len(decalols) == 2
    assert all(scaffold_smiles(standardize(s["smiles"]).mol) != s["meta"]["scaffold"] for s in decalols)

    # the same inputs without the option: the molecules as read, and the counts without the new term
    plain = run(tmp_path / "plain", inputs, 0)["counts"]
    assert "stereoisomers" not in plain
    assert plain["written"] == 11 and plain["duplicates"] == 0 and plain["excluded"] == 0


def stereoisomers_of(smiles: str) -> list:
    """The isomers featurisation drew for one molecule (its draw is seeded by the molecule's InChIKey)."""
    from acml_dist.data.featurize_tasks import stereo_draw

    res = standardize(smiles)
    return stereoisomers(res, LIMIT, stereo_draw(0, res.inchikey))
