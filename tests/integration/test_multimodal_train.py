"""ACML over every modality a molecule has, where most molecules lack most modalities.

The test writes a 400-molecule MOSES dataset and three spectrum outputs in the `modalities/<name>/` format
for random subsets (13C for ~30%, 1H for ~20%, MS for ~10%: binned count vectors of atom environments, so
each spectrum is a function of the structure), embeds them with 1-D conv spectrum teachers through the
embedding cache (one of them fetched from the MLflow registry as `acml-teacher-nmr1h`), trains with two real
DeepSpeed ranks over gloo with the Morgan teacher on every molecule, and evaluates per modality. It checks
that the cache's presence mask is exactly the modality's key set, that a molecule without a modality
contributes nothing to that modality's loss (loss, gradient, and the same loss with the missing rows cut
out), that the per-modality losses and presence fractions are in MLflow, that the total is the weighted
sum, and that the per-modality retrieval counts only the molecules that have the modality."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_train_zero import _train

pytestmark = pytest.mark.integration

# name -> (fraction of molecules having it, bins, generator)
MODALITIES = {"nmr13c": (0.3, 256, "morgan1"), "nmr1h": (0.2, 128, "morgan2"), "ms": (0.1, 512, "atompair")}
OUT_DIM = 32


def synthetic_spectrum(smiles: str, n_bins: int, gen: str) -> np.ndarray:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator as fg

    mol = Chem.MolFromSmiles(smiles)
    maker = {
        "morgan1": lambda: fg.GetMorganGenerator(radius=1, fpSize=n_bins),
        "morgan2": lambda: fg.GetMorganGenerator(radius=2, fpSize=n_bins),
        "atompair": lambda: fg.GetAtomPairGenerator(fpSize=n_bins),
    }[gen]()
    counts = maker.GetCountFingerprintAsNumPy(mol).astype(np.float32)
    return counts / max(float(counts.max()), 1.0)


def write_modality(root: Path, name: str, rows: list[tuple[str, str]], n_bins: int, gen: str) -> set[str]:
    """A complete `modalities/<name>/` output (chunks of 25, sha256 manifest) written by the real writer."""
    from acml_dist.data.modalities import encode_chunk, modality_dir, write_chunk, write_manifest

    out = modality_dir(root, name)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for c, start in enumerate(range(0, len(rows), 25)):
        part = rows[start : start + 25]
        spectra = [synthetic_spectrum(s, n_bins, gen) for _, s in part]
        peaks = [np.flatnonzero(x).astype(np.float32) for x in spectra]
        entries.append(
            write_chunk(out, c, encode_chunk([k for k, _ in part], spectra, peaks, n_bins), len(part))
        )
    bins = {"name": name, "low": 0.0, "high": float(n_bins), "n_bins": n_bins}
    manifest = {
        "modality": name,
        "producer": {"kind": "synthetic", "generator": gen},
        "bins": bins,
        "counts": {"selected": len(rows), "written": len(rows), "rejected": 0},
        "chunks": entries,
        "complete": True,
    }
    write_manifest(out, manifest)
    return {k for k, _ in rows}


def teachers_yaml(paths: dict[str, str]) -> str:
    """The `teachers=mm_test` group: Morgan on every molecule, a 1-D conv spectrum teacher per modality with
    its weights (`paths`) and its loss weight."""
    lines = ["morgan: {kind: fingerprint, modality: fingerprint, weight: 1.0,",
             "         params: {radius: 2, n_bits: 2048, counts: false}}"]  # fmt: skip
    for n, (_, n_bins, _) in MODALITIES.items():
        lines.append(
            f"{n}: {{kind: conv1d_spectrum, modality: {n}, weight: {WEIGHTS[n]}, path: '{paths[n]}',"
        )
        lines.append(f"        params: {{n_bins: {n_bins}, out_dim: {OUT_DIM}}}}}")
    return "\n".join(lines) + "\n"


def save_teacher_weights(folder: Path, name: str, n_bins: int, seed: int) -> str:
    """Fixed weights for an untrained teacher (`random_init` draws new ones in every embedding actor)."""
    import torch

    from acml_dist.teachers.spectrum_conv import build_conv1d_encoder

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(build_conv1d_encoder(n_bins, OUT_DIM).state_dict(), folder / f"{name}.pt")
    return str(folder / f"{name}.pt")


WEIGHTS = {"morgan": 1.0, "nmr13c": 2.0, "nmr1h": 1.0, "ms": 0.5}
EMBED_ONLY = {n: [f"~teachers.{t}" for t in WEIGHTS if t != n] for n in WEIGHTS}


@pytest.fixture(scope="module")
def multimodal(tiny_shards, tmp_path_factory):
    """A copy of the 400-molecule dataset with the three modalities written and embedded; a config tree
    (ACML_CONFIG_DIR) with the `teachers=mm_test` group, the 1H teacher read from the MLflow registry."""
    from acml_dist.config import config_dir, load_config
    from acml_dist.data.modalities import iter_dataset_molecules
    from acml_dist.teachers import load_teacher
    from acml_dist.teachers.cache import embed_dataset
    from acml_dist.teachers.registry import log_teacher

    tmp = tmp_path_factory.mktemp("multimodal")
    root = tmp / "ds"
    shutil.copytree(tiny_shards, root)  # graph shards + the Morgan cache (every molecule)
    molecules = [(m["key"], m["smiles"]) for m in iter_dataset_molecules(root, ("train", "val", "test"))]
    rng = np.random.default_rng(0)
    keys = {}
    for name, (frac, n_bins, gen) in MODALITIES.items():
        chosen = [m for m in molecules if rng.random() < frac]
        keys[name] = write_modality(root, name, chosen, n_bins, gen)

    paths = {
        n: save_teacher_weights(tmp / "teachers", n, MODALITIES[n][1], i) for i, n in enumerate(MODALITIES)
    }
    uri = f"sqlite:///{tmp / 'registry.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)  # the embed actors fetch models:/ from here
    mp.setenv("MLFLOW_ARTIFACT_ROOT", str(tmp / "artifacts"))
    nmr1h = load_teacher("nmr1h", {"kind": "conv1d_spectrum", "modality": "nmr1h", "path": paths["nmr1h"],
                                   "params": {"n_bins": 128, "out_dim": OUT_DIM}})  # fmt: skip
    version = log_teacher(nmr1h, tracking_uri=uri)
    configs = tmp / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "teachers" / "mm_test.yaml").write_text(
        teachers_yaml({**paths, "nmr1h": f"models:/acml-teacher-nmr1h/{version}"})
    )
    mp.setenv("ACML_CONFIG_DIR", str(configs))  # for this module's configs and the training ranks
    summary = embed_dataset(
        load_config("embed", [f"shards={root}", "cluster.num_cpus=2", "teachers=mm_test"])
    )
    mp.delenv("MLFLOW_TRACKING_URI")
    mp.delenv("MLFLOW_ARTIFACT_ROOT")
    yield {"root": root, "keys": keys, "summary": summary, "nmr1h_hash": nmr1h.weights_hash(),
           "n": len(molecules), "paths": paths}  # fmt: skip
    mp.undo()


def test_cache_presence_is_the_modality_key_set(multimodal):
    from acml_dist.data.loader import iter_samples

    root, keys = multimodal["root"], multimodal["keys"]
    teachers = multimodal["summary"]["teachers"]
    assert teachers["nmr1h"]["weights_hash"] == multimodal["nmr1h_hash"]  # the registered teacher embedded it
    n = multimodal["n"]
    for name in MODALITIES:
        m = teachers[name]
        assert m["spectra"]["name"] == name and m["spectra"]["molecules"] == len(keys[name])
        assert sum(s["missing"] for s in m["splits"].values()) == n - len(keys[name])
        assert 0 < len(keys[name]) < 0.5 * n  # most molecules lack it
    for split in ("train", "test"):
        for s in iter_samples(root, split, teachers=list(MODALITIES)):
            for name in MODALITIES:
                emb = s["embeddings"][name]
                assert (emb is not None) == (s["key"] in keys[name]), (name, s["key"])
                if emb is not None:
                    assert np.isfinite(emb).all() and abs(np.linalg.norm(emb) - 1) < 1e-2  # L2-normed teacher


def test_changed_or_tampered_modality_is_refused_and_reembedded(multimodal, tmp_path, ray_local):
    from acml_dist.config import load_config
    from acml_dist.data.modalities import ModalityLookup, modality_dir
    from acml_dist.data.shards import ShardMismatch, cache_manifest
    from acml_dist.errors import DataError
    from acml_dist.teachers.cache import embed_dataset

    root = tmp_path / "ds"
    shutil.copytree(multimodal["root"], root)
    chunk = modality_dir(root, "ms") / "chunk-000000.npz"
    good = chunk.read_bytes()
    chunk.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="sha256 differs"):
        ModalityLookup(root, "ms")
    chunk.write_bytes(good)
    # A new output for ms (one molecule fewer): the cache built from the old one is refused on read ...
    rows = [(k, s) for k, s in _rows(root) if k in multimodal["keys"]["ms"]][1:]
    write_modality(root, "ms", rows, MODALITIES["ms"][1], MODALITIES["ms"][2])
    with pytest.raises(ShardMismatch, match="another modalities/ms output"):
        cache_manifest(root, "ms")
    # ... and a rerun re-embeds every shard (the done records name the old output), then reads fine.
    base = [f"shards={root}", "cluster.num_cpus=2", "teachers=mm_test"]
    again = embed_dataset(load_config("embed", [*base, *EMBED_ONLY["ms"]]))["teachers"]["ms"]
    assert again["embedded_now"] == multimodal["n"]
    assert sum(s["missing"] for s in again["splits"].values()) == multimodal["n"] - len(rows)
    assert cache_manifest(root, "ms")["spectra"]["molecules"] == len(rows)
    # A spectrum teacher whose output is altered or missing: one clear error before any actor starts.
    chunk.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(DataError, match="ms.*sha256 differs from the manifest"):
        embed_dataset(load_config("embed", [*base, *EMBED_ONLY["ms"]]))
    shutil.rmtree(modality_dir(root, "nmr13c"))
    with pytest.raises(DataError, match="acml nmr-predict"):
        embed_dataset(load_config("embed", [*base, *EMBED_ONLY["nmr13c"]]))


def _rows(root: Path) -> list[tuple[str, str]]:
    from acml_dist.data.modalities import iter_dataset_molecules

    return [(m["key"], m["smiles"]) for m in iter_dataset_molecules(root, ("train", "val", "test"))]


@pytest.mark.parametrize("kind", ["clip", "acml_soft"])
def test_a_molecule_without_a_modality_contributes_nothing(multimodal, kind):
    """On a real batch (cache masks from the loader) through the real model: garbage in the missing rows'
    teacher embeddings changes nothing, they get no gradient, and the loss equals the loss of the batch with
    those rows cut out. A loss or loader that ignored the mask fails all three."""
    import torch

    from acml_dist.config import load_config
    from acml_dist.data.loader import make_loader
    from acml_dist.losses import ContrastiveLoss
    from acml_dist.models import ACMLModel

    root = multimodal["root"]
    names = ["morgan", *MODALITIES]
    batch = next(iter(make_loader(root, "train", 96, teachers=names)))
    cfg = load_config(
        "train", ["model=gin_small", "model.num_layers=2", "model.emb_dim=16", "model.proj_dim=16"]
    )
    dims = {n: int(batch.embeddings[n].shape[1]) for n in names}
    torch.manual_seed(0)
    model = ACMLModel(cfg.model, dims).eval()
    loss_fn = ContrastiveLoss(kind)
    embs = {n: batch.embeddings[n].float() for n in names}
    for name in MODALITIES:
        mask = batch.masks[name]
        assert 0 < int(mask.sum()) < len(mask)
        assert mask.tolist() == [k in multimodal["keys"][name] for k in batch.keys]
        leaf = embs[name].clone().requires_grad_(True)
        g, t, s = model(batch.graph, {**embs, name: leaf})[name]
        loss = loss_fn(g, t, mask, s)
        loss.backward()
        assert leaf.grad[~mask].abs().max() == 0 and leaf.grad[mask].abs().max() > 0
        cut = loss_fn(g[mask], t[mask], None, s)
        torch.testing.assert_close(loss, cut, rtol=1e-5, atol=1e-6)
        garbage = embs[name].clone()
        garbage[~mask] = torch.randn_like(garbage[~mask]) * 100
        g2, t2, s2 = model(batch.graph, {**embs, name: garbage})[name]
        torch.testing.assert_close(loss_fn(g2, t2, mask, s2), loss.detach(), rtol=0, atol=1e-6)


def test_two_rank_training_over_sparse_modalities_logs_each(multimodal, tmp_path, mlflow_store):
    from mlflow import MlflowClient

    from acml_dist.config import load_config
    from acml_dist.evaluate import evaluate

    root, run = multimodal["root"], tmp_path / "run"
    overrides = [
        f"shards={root}", f"output={run}", f"runs_root={tmp_path}", "teachers=mm_test",
        "model=gin_small", "model.num_layers=2", "model.emb_dim=16", "model.proj_dim=16",
        "trainer.micro_batch=16", "trainer.num_workers=0", "trainer.max_steps=16", "trainer.log_every=2",
        "trainer.warmup_steps=1", "trainer.lr=3e-3", "trainer.checkpoint_every=0",
    ]  # fmt: skip
    texts = _train(overrides, 2, tmp_path, "mm")
    result = json.loads(texts[0].strip().splitlines()[-1])
    assert result["steps"] == 16 and result["world_size"] == 2
    assert "loss_ms=" in texts[0] and "loss_nmr13c=" in texts[0]  # per-modality loss in the log lines

    history = json.loads((run / "history.json").read_text())
    for h in history:
        present = [n for n in WEIGHTS if f"loss_{n}" in h]
        assert "morgan" in present and h["valid_frac_morgan"] == 1.0
        for n in MODALITIES:  # a loss exactly when some molecule of the step had the modality
            assert (f"loss_{n}" in h) == (h[f"valid_frac_{n}"] > 0), h
        assert h["loss"] == pytest.approx(sum(WEIGHTS[n] * h[f"loss_{n}"] for n in present), rel=1e-4)

    client = MlflowClient(mlflow_store)
    logged = client.get_run(result["run_id"]).data.metrics
    for n in WEIGHTS:
        assert np.isfinite(logged[f"loss_{n}"]), n
        fracs = [m.value for m in client.get_metric_history(result["run_id"], f"valid_frac_{n}")]
        assert len(fracs) >= 8  # every log line (every 2nd of 16 steps)
    frac = {n: np.mean([m.value for m in client.get_metric_history(result["run_id"], f"valid_frac_{n}")])
            for n in MODALITIES}  # fmt: skip
    assert frac["ms"] < frac["nmr1h"] < frac["nmr13c"] < 0.5  # the training batches saw sparse modalities

    metrics = evaluate(load_config("evaluate", [
        f"model={result['model_dir']}", f"shards={root}", f"output={tmp_path / 'eval'}",
        "teachers=mm_test", "tracking.enabled=false", "eval.split=val", "eval.property_datasets=[]",
        "eval.retrieval_pools=[128,1000,0]", "eval.embedding_map=false", "eval.attributions=0",
    ]))  # fmt: skip
    report = (tmp_path / "eval" / "report.md").read_text()
    from acml_dist.data.loader import iter_samples

    test_keys = [s["key"] for s in iter_samples(root, "val")]  # the held-out split (the dataset has no test)
    for n in MODALITIES:
        have = sum(k in multimodal["keys"][n] for k in test_keys)
        assert f"**{n}** ({have} molecules with this modality)" in report
        assert 0 <= metrics[f"retrieval_{n}_graph2teacher_poolall_r1"] <= 1
    assert "probe_logP_teacher_morgan" in metrics and "probe_logP_teacher_nmr13c" in metrics
    assert "probe_logP_ACML_GIN_on_nmr13c" in metrics
