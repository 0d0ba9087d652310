"""Helpers the test modules share (importable as `helpers`: tests/conftest.py puts this folder on sys.path).

- `DEMO_SMILES`, `write_dataset`: a tiny featurised dataset in the shard format of `acml_dist.data.shards`,
  written in-process (no Ray) through that module's writer; `benchmarks/embed.py` uses it too.
- `featurise`: a real featurisation (Ray) of a SMILES list, then optionally the embedding cache.
- `free_port`, `kill_group`, `stop_group`, `kill_ray_worker`: ports and processes of the tests that start
  servers, ranks and Ray jobs; `rank_env`, `tiny_train_overrides`: one training rank of a tiny GIN.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Optional

from acml_dist.data.packed import Packed
from acml_dist.data.shards import (
    FORMAT,
    SCHEMA_VERSION,
    atomic_write,
    encode_graph_shard,
    shard_name,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]

DEMO_SMILES = [
    "CCO", "CCN", "CCCO", "CCCN", "CC(=O)O", "CC(=O)N", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1",
    "c1ccncc1", "Cc1ccncc1", "C1CCCCC1", "C1CCNCC1", "C1CCOCC1", "CC(C)O", "CC(C)N", "OCCO", "NCCN",
    "c1ccc2ccccc2c1", "CC(=O)Oc1ccccc1C(=O)O", "CN1CCC[C@H]1c1cccnc1", "Clc1ccccc1", "Brc1ccccc1",
    "c1ccc[nH]1", "c1ccoc1", "c1ccsc1", "CCOC(=O)C", "CCCCCC", "CCCCCCCC",
]  # fmt: skip


def write_dataset(root: Path, splits: dict[str, list[str]], samples_per_shard: int = 8) -> dict:
    """Write <root>/<split>/shard-XXXXXX.npz + manifest.json for the given SMILES (the format of
    `acml_dist.data.shards`, featurised with `chem.featurize.mol_to_graph`); returns the manifest."""
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    from acml_dist.chem.featurize import mol_to_graph

    root = Path(root)
    manifest: dict = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "complete": True,
        "config_hash": hashlib.sha1(json.dumps(splits, sort_keys=True).encode()).hexdigest()[:16],
        "splits": {},
    }
    for split, smiles in splits.items():
        entries = []
        for n, start in enumerate(range(0, len(smiles), samples_per_shard)):
            chunk = smiles[start : start + samples_per_shard]
            mols = [Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(s))) for s in chunk]
            cans = [Chem.MolToSmiles(m) for m in mols]
            keys = ["h" + hashlib.sha1(f"{split}:{start}:{c}".encode()).hexdigest()[:16] for c in cans]
            metas = [{"inchikey": Chem.MolToInchiKey(m), "formula": CalcMolFormula(m), "source": "test"}
                     for m in mols]  # fmt: skip
            packed = Packed.from_graphs(
                [mol_to_graph(m) for m in mols],
                {
                    "key": [k.encode() for k in keys],
                    "smiles.txt": [c.encode() for c in cans],
                    "meta.json": [json.dumps(m).encode() for m in metas],
                },
            )
            data = encode_graph_shard(packed)
            name = shard_name(split, n)
            atomic_write(root / name, data)
            entries.append({"name": name, "samples": len(chunk), "sha256": hashlib.sha256(data).hexdigest()})
        manifest["splits"][split] = {"samples": len(smiles), "shards": entries}
    write_manifest(root, manifest)
    return manifest


def featurise(
    root: Path,
    smiles: Optional[list[str]],
    *overrides: str,
    teachers: Optional[str] = "fingerprint",
    num_cpus: int = 2,
) -> Path:
    """Featurise `smiles` (written to `<root>.csv`; None: the overrides name the source, e.g. data=nci5k)
    into `root` with the real stage on Ray (random split unless the overrides say otherwise), then embed
    it with the `teachers` group (None: no cache). Returns `root`."""
    from acml_dist.config import load_config
    from acml_dist.data.featurize import featurize_corpus
    from acml_dist.teachers.cache import embed_dataset

    root = Path(root)
    args = [f"output={root}", "data.split=random", f"cluster.num_cpus={num_cpus}"]
    if smiles is not None:
        csv = root.with_suffix(".csv")
        csv.parent.mkdir(parents=True, exist_ok=True)
        csv.write_text("smiles\n" + "\n".join(smiles) + "\n")
        args += [f"input={csv}", "data=file"]
    featurize_corpus(load_config("featurize", [*args, *overrides]))
    if teachers:
        embed = [f"shards={root}", f"teachers={teachers}", f"cluster.num_cpus={num_cpus}"]
        embed_dataset(load_config("embed", embed))
    return root


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (tests never use the demo's fixed ports)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (started with start_new_session=True: the process and whatever it
    started, e.g. its Ray workers); reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group has ended already
        pass
    proc.wait()


def stop_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the process group of `proc`, SIGKILL it after `grace_s` seconds; reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_ray_worker(prefix: str) -> Optional[int]:
    """SIGKILL one Ray worker whose command line starts with `prefix` (e.g. "ray::process_chunk", a task
    running now, or "ray::EmbedWorker", an actor); its pid, or None when none runs."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        if " ".join(proc.info["cmdline"] or []).startswith(prefix):
            os.kill(proc.info["pid"], signal.SIGKILL)
            return proc.info["pid"]
    return None


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The environment of one `acml_dist/train.py` rank of `world` on 127.0.0.1 (CPU, gloo)."""
    return {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "ACML_LOG_LEVEL": "INFO",
    }


def tiny_train_overrides(shards: Path, run: Path, runs_root: Path) -> list[str]:
    """Overrides for a 2-layer, width-16 GIN on the fingerprint teacher: steps of a few milliseconds."""
    return [
        f"shards={shards}",
        f"output={run}",
        f"runs_root={runs_root}",
        "teachers=fingerprint",
        "model=gin_small",
        "model.num_layers=2",
        "model.emb_dim=16",
        "model.proj_dim=16",
        "trainer.micro_batch=16",
    ]
