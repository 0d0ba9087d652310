"""GPU throughput of the training path, measured in one run on any CUDA machine (ratios are what to compare).

    python benchmarks/gpu.py --prepare DIR        # on a CPU box with RDKit: packed shards + caches + rxnfp
    python benchmarks/gpu.py --data DIR           # on the GPU node (torch, PyG, numpy, deepspeed only)
    python benchmarks/gpu.py                      # both in one go (needs RDKit where the GPU is)
    python benchmarks/gpu.py --dry                # every measurement on CPU, tiny sizes (the test runs this)

Measures: bare GIN vs the full ACML step (GIN + 2 heads + CLIP loss, torch AdamW, bf16 autocast) at batch
1024 / 4096 on batches already on the device; `make_loader` alone with 1 and 8 workers (graphs + rxnfp
256-d float16 + Morgan 2048 bits, shuffled, batch 1024); loader (8 workers, pinned) -> non-blocking copy ->
full step end to end; the rxnfp BERT teacher's forward (fp16, pre-tokenised, batch 1024 / 4096; skipped
with the reason when transformers or the weights are missing); a DeepSpeed engine (ZeRO 1, bf16, as
`trainer=gpu`) trained from the loader for a few hundred steps, eager and under `engine.compile`.
Prints a table naming the card and ends with one JSON line. Without CUDA (and without --dry/--prepare) it
says so and exits 0. rxnfp cache values are random (the costs do not depend on them); Morgan bits are RDKit's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("ACML_LOG_LEVEL", "WARNING")
TEACHERS = ("rxnfp", "morgan")
SIZES: dict[str, dict[str, Any]] = {
    "full": {"molecules": 5000, "per_shard": 1000, "batches": (1024, 4096), "steps": 30, "warmup": 5,
             "workers": (1, 8), "loader_batches": 40, "emb_dim": 300, "layers": 5, "proj": 512,
             "teacher_batches": (1024, 4096), "ds_steps": 300, "ds_batch": 1024},
    "dry": {"molecules": 300, "per_shard": 100, "batches": (32, 64), "steps": 3, "warmup": 1,
            "workers": (0, 1), "loader_batches": 4, "emb_dim": 16, "layers": 2, "proj": 16,
            "teacher_batches": (8,), "ds_steps": 4, "ds_batch": 32},
}  # fmt: skip


# ------------------------------------------------------------------------------ data (CPU, RDKit)
def read_smiles(path: Path, n: int) -> list[str]:
    """The first n SMILES of a SMILES / CSV file (gzipped or not; first column; a `smiles` header skipped)."""
    import gzip

    out: list[str] = []
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as fh:
        for line in fh:
            first = line.strip().split(",")[0].split()[0] if line.strip() else ""
            if first and first.lower() != "smiles":
                out.append(first)
            if len(out) >= n:
                break
    return out


def prepare(root: Path, molecules: int, per_shard: int, smiles_file: Path | None = None) -> dict[str, Any]:
    """Packed shards + rxnfp / Morgan caches of MOSES molecules (benchmarks/loader.py's `build`), and a
    copy of rxnfp's BERT directory (when installed) so the GPU node needs neither RDKit nor rxnfp."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loader import build  # benchmarks/loader.py

    if smiles_file is not None:
        smiles = read_smiles(smiles_file, molecules)
    else:
        from acml_dist.data.datasets import moses_smiles

        smiles = moses_smiles(molecules)
    info = build(root, smiles, per_shard)
    shutil.rmtree(root / "old")  # the old per-sample tars build() also writes: not needed here
    try:
        from acml_dist.teachers.smiles_lm import rxnfp_model_dir

        shutil.copytree(rxnfp_model_dir(), root / "rxnfp")
        info["rxnfp_weights"] = "copied"
    except Exception as exc:  # noqa: BLE001 - reported, the rest of the benchmark runs without it
        info["rxnfp_weights"] = f"missing: {exc}"
    return info


# ------------------------------------------------------------------------------ measurements (GPU node)
def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def device_batches(root: Path, batch: int, count: int, device: Any) -> list[tuple[Any, dict[str, Any]]]:
    from acml_dist.data.loader import make_loader

    loader = make_loader(root, "train", batch, teachers=TEACHERS, shuffle=True, batches_per_epoch=count,
                         text=("key",))  # fmt: skip
    out = []
    for b in loader:
        b = b.to(device)
        out.append((b.graph, {n: e.float() for n, e in b.embeddings.items()}))
    return out


def step_fns(sz: dict[str, Any], device: Any, dims: dict[str, int]) -> dict[str, Callable]:
    """Bare GIN and full ACML step, each with its own model and torch AdamW, under bf16 autocast."""
    import torch

    from acml_dist.losses import ContrastiveLoss
    from acml_dist.models.acml import ACMLModel
    from acml_dist.models.gin import GIN

    torch.manual_seed(0)
    gin = GIN(num_layers=sz["layers"], emb_dim=sz["emb_dim"]).to(device)
    cfg = {"schema": "hu", "num_layers": sz["layers"], "emb_dim": sz["emb_dim"], "proj_dim": sz["proj"]}
    model = ACMLModel(cfg, dims).to(device)
    loss_fn = ContrastiveLoss("clip")
    opts = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-3, foreach=True) for m in (gin, model)}

    def bare(graph: Any, emb: dict[str, Any]) -> None:
        opt = opts[id(gin)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = gin(graph)
        out.float().square().mean().backward()  # a scalar of the output: the GIN's own cost only
        opt.step()

    def full(graph: Any, emb: dict[str, Any], masks: dict[str, Any] | None = None) -> None:
        opt = opts[id(model)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            outputs = model(graph, emb)
            total = sum(loss_fn(g, t, (masks or {}).get(n), s) for n, (g, t, s) in outputs.items())
        total.backward()
        opt.step()

    compiled_model: list[Any] = []

    def full_compiled(graph: Any, emb: dict[str, Any]) -> None:
        """The full step with the model under torch.compile(dynamic=True) (inductor on CUDA)."""
        if not compiled_model:
            backend = "inductor" if device.type == "cuda" else "eager"
            compiled_model.append(torch.compile(model, dynamic=True, backend=backend))
        opt = opts[id(model)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            outputs = compiled_model[0](graph, emb)
            total = sum(loss_fn(g, t, None, s) for n, (g, t, s) in outputs.items())
        total.backward()
        opt.step()

    return {"bare": bare, "full": full, "full_compiled": full_compiled}


def timed(fn: Callable, data: list, sz: dict[str, Any], device: Any) -> float:
    for graph, emb in data[: sz["warmup"]]:
        fn(graph, emb)
    sync(device)
    n, t0 = 0, time.perf_counter()
    for i in range(sz["steps"]):
        graph, emb = data[i % len(data)]
        fn(graph, emb)
        n += int(graph.num_graphs)
    sync(device)
    return n / (time.perf_counter() - t0)


def loader_rate(root: Path, batch: int, workers: int, n_batches: int, pin: bool,
                consume: Callable[[Any], None] | None = None, device: Any = None) -> float:  # fmt: skip
    """molecules/s of make_loader (optionally feeding `consume`), after 2 warm-up batches (worker start)."""
    from acml_dist.data.loader import make_loader

    loader = make_loader(root, "train", batch, teachers=TEACHERS, shuffle=True, num_workers=workers,
                         batches_per_epoch=n_batches + 2, pin_memory=pin, text=("key",))  # fmt: skip
    n, t0 = 0, 0.0
    for i, b in enumerate(loader):
        if consume is not None:
            consume(b)
        if i == 1:
            t0 = time.perf_counter()
        elif i > 1:
            n += int(b.graph.num_graphs)
    if device is not None:
        sync(device)  # the last steps queued on the device count too
    return n / (time.perf_counter() - t0)


def host_syncs(root: Path, batch: int, device: Any, consume: Callable[[Any], None]) -> dict[str, Any]:
    """Where the end-to-end loop makes the host wait on the device (torch's sync debug mode, 3 steps)."""
    import warnings

    import torch

    if device.type != "cuda":
        return {"status": "skipped", "reason": "CUDA only"}
    from acml_dist.data.loader import make_loader

    loader = make_loader(root, "train", batch, teachers=TEACHERS, shuffle=True, batches_per_epoch=4,
                         pin_memory=True, text=("key",))  # fmt: skip
    it = iter(loader)
    consume(next(it))  # first step: allocations, lazy inits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode(1)
        try:
            for b in it:
                consume(b)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    where = sorted({f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)})
    return {"status": "ok", "per_step": round(len(caught) / 3, 1), "where": where[:12]}


def teacher_rate(root: Path, sz: dict[str, Any], device: Any) -> dict[str, Any]:
    """rxnfp BERT forward (CLS) on pre-tokenised MOSES SMILES, fp16 on CUDA (fp32 on CPU)."""
    try:
        import torch
        from transformers import BertConfig, BertModel

        from acml_dist.data.loader import make_loader
        from acml_dist.teachers.smiles_lm import regex_tokens
    except Exception as exc:  # noqa: BLE001 - a GPU node may lack transformers: reported as skipped
        return {"status": "skipped", "reason": f"import failed: {exc}"}
    path = root / "rxnfp"
    if not (path / "config.json").exists():
        return {"status": "skipped", "reason": f"no rxnfp weights in {path} (prepare with rxnfp installed)"}
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the MLM head is "unexpected" for an encoder: expected
        cfg = BertConfig.from_pretrained(path)
        model = BertModel.from_pretrained(path, config=cfg, add_pooling_layer=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a transformers that refuses .bin weights with this torch
        return {"status": "skipped", "reason": f"loading {path} failed: {type(exc).__name__}: {exc}"[:300]}
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    vocab = {line.rstrip("\n"): i for i, line in enumerate((path / "vocab.txt").read_text().splitlines(True))}
    out: dict[str, Any] = {"status": "ok", "dtype": str(dtype).removeprefix("torch."), "mol_s": {}}
    for batch in sz["teacher_batches"]:
        smiles = next(iter(make_loader(root, "train", batch, shuffle=True, batches_per_epoch=1,
                                       text=("smiles.txt",)))).smiles  # fmt: skip
        rows = [[vocab["[CLS]"], *[vocab.get(t, vocab["[UNK]"]) for t in regex_tokens(f"{s}>>")][:510],
                 vocab["[SEP]"]] for s in smiles]  # fmt: skip
        ids = torch.zeros((len(rows), max(map(len, rows))), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        ids, mask = ids.to(device), (ids != 0).long().to(device)
        reps = max(2, sz["steps"] // 3)
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(reps):
                model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
            sync(device)
        out["mol_s"][str(batch)] = round(len(rows) * reps / (time.perf_counter() - t0))
    return out


def online_rate(root: Path, sz: dict[str, Any], device: Any, full: Callable) -> dict[str, Any]:
    """Loader -> the rxnfp teacher online (the product's SmilesLMTeacher, tokenised on the fly, bf16 on
    CUDA) -> the full step, against the same loop with the rxnfp cache: the `source=online` cost."""
    try:
        from acml_dist.config.teachers import TeacherConfig
        from acml_dist.teachers import load_teacher

        # the offline default's tokenisation (regex tokens of "SMILES>>"), not a user BERT's WordPiece
        tcfg = TeacherConfig(kind="smiles_lm", modality="smiles", path=str(root / "rxnfp"),
                             batch_size=sz["batches"][0],
                             params={"tokenizer": "regex", "template": "{}>>"})  # fmt: skip
        teacher = load_teacher("rxnfp", tcfg)
    except Exception as exc:  # noqa: BLE001 - reported; the rest stands without it
        return {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    from acml_dist.data.loader import make_loader
    from acml_dist.training.online import fill_online, online_inputs

    batch, workers = sz["batches"][0], sz["workers"][-1]
    # the product's route (acml_dist.training.trainer): tokens made in the loader workers, the embedding
    # left on the device
    loader = make_loader(root, "train", batch, teachers=("morgan",), shuffle=True, num_workers=workers,
                         batches_per_epoch=sz["loader_batches"] + 2, pin_memory=device.type == "cuda",
                         text=("key", "smiles.txt"), inputs=online_inputs({"rxnfp": teacher}))  # fmt: skip
    n, t0 = 0, 0.0
    for i, b in enumerate(loader):
        b = b.to(device, non_blocking=True)
        fill_online(b, {"rxnfp": teacher})
        full(b.graph, {k: e.float() for k, e in b.embeddings.items()}, b.masks)
        if i == 1:
            sync(device)
            t0 = time.perf_counter()
        elif i > 1:
            n += int(b.graph.num_graphs)
    sync(device)
    return {"status": "ok", "mol_s": round(n / (time.perf_counter() - t0))}


def deepspeed_run(root: Path, sz: dict[str, Any], device: Any, dims: dict[str, int], compiled: bool,
                  workers: int) -> dict[str, Any]:  # fmt: skip
    """`trainer=gpu`'s engine (ZeRO 1; bf16 on CUDA, fp32 on CPU) fed by the loader, as acml_dist.train."""
    import torch

    from acml_dist.data.loader import make_loader
    from acml_dist.losses import ContrastiveLoss
    from acml_dist.models.acml import ACMLModel
    from acml_dist.training.distributed import init_distributed
    from acml_dist.training.ds_config import build_ds_config, initialize_engine

    init_distributed("auto")
    torch.manual_seed(0)
    cfg = {"schema": "hu", "num_layers": sz["layers"], "emb_dim": sz["emb_dim"], "proj_dim": sz["proj"]}
    trainer = SimpleNamespace(precision="bf16" if device.type == "cuda" else "fp32", warmup_steps=50,
                              micro_batch=sz["ds_batch"], grad_accum=1, grad_clip=1.0, lr=1e-3,
                              weight_decay=1e-3, zero_stage=1, extra_ds_config={})  # fmt: skip
    engine, _ = initialize_engine(ACMLModel(cfg, dims), build_ds_config(trainer, sz["ds_steps"], True), 1e-3)
    t_compile = time.perf_counter()
    if compiled:  # inductor on CUDA; on CPU (--dry) dynamo with the eager backend: no C++ build
        backend = "inductor" if device.type == "cuda" else "eager"
        engine.compile(backend=backend, compile_kwargs={"dynamic": True})
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    loss_fn = ContrastiveLoss("clip")
    loader = make_loader(root, "train", sz["ds_batch"], teachers=TEACHERS, shuffle=True,
                         num_workers=workers, batches_per_epoch=sz["ds_steps"],
                         pin_memory=device.type == "cuda", text=("key",))  # fmt: skip
    warm = max(1, min(20, sz["ds_steps"] // 10))
    n, t0, first_s = 0, 0.0, 0.0
    for i, batch in enumerate(loader):
        batch = batch.to(engine.device, non_blocking=True)
        outputs = engine(batch.graph, {k: e.to(dtype) for k, e in batch.embeddings.items()})
        total = sum(loss_fn(g, t, batch.masks.get(k), s) for k, (g, t, s) in outputs.items())
        engine.backward(total)
        engine.step()
        if i + 1 == warm:
            float(total.detach())  # synchronises
            first_s, t0 = time.perf_counter() - t_compile, time.perf_counter()
        elif i + 1 > warm:
            n += len(batch)
    loss = float(total.detach())
    rate = n / (time.perf_counter() - t0)
    return {"mol_s": round(rate), "steps": sz["ds_steps"], "first_steps_s": round(first_s, 1),
            "final_loss": round(loss, 4)}  # fmt: skip


# ------------------------------------------------------------------------------ the run
def measure(root: Path, sz: dict[str, Any], device: Any) -> dict[str, Any]:
    from acml_dist.data.shards import cache_manifest

    dims = {t: int(cache_manifest(root, t)["dim"]) for t in TEACHERS}
    out: dict[str, Any] = {"bare_gin_mol_s": {}, "acml_step_mol_s": {}, "loader_mol_s": {}}
    fns = step_fns(sz, device, dims)
    for batch in sz["batches"]:
        data = device_batches(root, batch, 3, device)
        out["bare_gin_mol_s"][str(batch)] = round(timed(fns["bare"], data, sz, device))
        out["acml_step_mol_s"][str(batch)] = round(timed(fns["full"], data, sz, device))
        if batch == sz["batches"][-1]:
            try:  # the first calls compile (timed() warms up first); a failure is reported, not fatal
                out["acml_step_compiled_mol_s"] = round(timed(fns["full_compiled"], data, sz, device))
            except Exception as exc:  # noqa: BLE001
                out["acml_step_compiled_mol_s"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        del data
    big = str(sz["batches"][-1])
    out["acml_vs_bare"] = round(out["acml_step_mol_s"][big] / out["bare_gin_mol_s"][big], 3)
    batch, pin = sz["batches"][0], device.type == "cuda"
    for w in sz["workers"]:
        out["loader_mol_s"][str(w)] = round(loader_rate(root, batch, w, sz["loader_batches"], pin))

    def consume(b: Any) -> None:
        b = b.to(device, non_blocking=True)
        fns["full"](b.graph, {n: e.float() for n, e in b.embeddings.items()}, b.masks)

    try:  # a diagnostic: its failure must not cost the figures
        out["host_syncs"] = host_syncs(root, batch, device, consume)
    except Exception as exc:  # noqa: BLE001
        out["host_syncs"] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    e2e = loader_rate(root, batch, sz["workers"][-1], sz["loader_batches"], pin, consume, device)
    out["end_to_end_mol_s"] = round(e2e)
    out["end_to_end_vs_step"] = round(e2e / out["acml_step_mol_s"][str(batch)], 3)
    big_batch = sz["batches"][-1]  # where the device, not the host launching kernels, bounds the step
    e2e_big = loader_rate(root, big_batch, sz["workers"][-1], max(4, sz["loader_batches"] // 4), pin, consume,
                          device)  # fmt: skip
    out["end_to_end_large_mol_s"] = round(e2e_big)
    out["end_to_end_large_vs_step"] = round(e2e_big / out["acml_step_mol_s"][str(big_batch)], 3)
    out["teacher_rxnfp"] = teacher_rate(root, sz, device)
    out["online_rxnfp"] = online_rate(root, sz, device, fns["full"])
    if out["online_rxnfp"]["status"] == "ok":
        out["online_vs_cache"] = round(out["online_rxnfp"]["mol_s"] / max(1, out["end_to_end_mol_s"]), 3)
    out["deepspeed"] = {}
    for mode in ("eager", "compiled"):
        try:  # a failed engine run (e.g. no Triton for inductor) is reported; the figures above stand
            run = deepspeed_run(root, sz, device, dims, mode == "compiled", sz["workers"][-1])
            out["deepspeed"][mode] = {"status": "ok", **run}
        except Exception as exc:  # noqa: BLE001
            out["deepspeed"][mode] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def _num(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(r: dict[str, Any]) -> str:
    b0, b1 = (str(b) for b in r["batches"])
    w0, w1 = (str(w) for w in r["workers"])
    t = r["teacher_rxnfp"]
    teacher = (" / ".join(f"{v:,}" for v in t["mol_s"].values()) if t["status"] == "ok"
               else f"skipped: {t['reason']}")  # fmt: skip
    ds = [f"{v['mol_s']:,} (warm-up steps {v['first_steps_s']} s)" if v["status"] == "ok"
          else f"failed: {v['reason']}" for v in r["deepspeed"].values()]  # fmt: skip
    rows = [
        (f"bare GIN fwd+bwd+AdamW, bf16, batch {b0} / {b1}",
         f"{r['bare_gin_mol_s'][b0]:,} / {r['bare_gin_mol_s'][b1]:,}"),
        (f"full ACML step, bf16, batch {b0} / {b1}",
         f"{r['acml_step_mol_s'][b0]:,} / {r['acml_step_mol_s'][b1]:,}"),
        (f"make_loader, batch {b0}, {w0} / {w1} workers",
         f"{r['loader_mol_s'][w0]:,} / {r['loader_mol_s'][w1]:,}"),
        (f"end to end: loader ({w1} workers) -> device -> full step, batch {b0}",
         f"{r['end_to_end_mol_s']:,} ({r['end_to_end_vs_step']}x the step)"),
        (f"end to end: loader ({w1} workers) -> device -> full step, batch {b1}",
         f"{r['end_to_end_large_mol_s']:,} ({r['end_to_end_large_vs_step']}x the step)"),
        (f"full ACML step, torch.compile(dynamic=True), batch {b1}", _num(r["acml_step_compiled_mol_s"])),
        (f"rxnfp teacher forward, batch {' / '.join(map(str, r['teacher_batches']))}", teacher),
        (f"loader -> rxnfp online -> full step, batch {b0}",
         f"{_num(r['online_rxnfp'].get('mol_s', r['online_rxnfp'].get('reason')))}"
         + (f" ({r['online_vs_cache']}x from the cache)" if "online_vs_cache" in r else "")),
        (f"DeepSpeed ZeRO 1 from the loader, {r['ds_steps']} steps, eager", ds[0]),
        (f"DeepSpeed ZeRO 1 from the loader, {r['ds_steps']} steps, engine.compile", ds[1]),
    ]  # fmt: skip
    width = max(len(a) for a, _ in rows)
    lines = [f"device: {r['device']} ({r['mode']})", f"{'measure'.ljust(width)} | molecules/s"]
    lines += [f"{a.ljust(width)} | {b}" for a, b in rows]
    h = r["host_syncs"]
    lines.append(f"host syncs per end-to-end step: {h.get('per_step', h.get('reason'))} {h.get('where', '')}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes: checks the code, not the speed")
    ap.add_argument("--prepare", type=Path, help="write shards + caches (+ rxnfp weights) here and stop")
    ap.add_argument("--data", type=Path, help="a directory written by --prepare")
    ap.add_argument("--molecules", type=int, help="molecules to featurise (default 5000; --dry 300)")
    ap.add_argument("--smiles", type=Path, help="--prepare from this SMILES/CSV file (default: MOSES test)")
    args = ap.parse_args()
    mode = "dry" if args.dry else "full"
    sz = dict(SIZES[mode])
    if args.molecules:
        sz["molecules"] = args.molecules
    if args.prepare:
        info = prepare(args.prepare, sz["molecules"], sz["per_shard"], args.smiles)
        print(json.dumps({"prepared": str(args.prepare), **info}))
        return 0
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device (none found); --dry runs it on CPU with tiny sizes")
        print(json.dumps({"benchmark": "gpu", "skipped": "no CUDA device"}))
        return 0
    if args.dry:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        torch.set_num_threads(1)
    device = torch.device("cuda" if not args.dry else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (--dry)"
    t_start = time.time()
    result: dict[str, Any] = {"benchmark": "gpu", "mode": mode, "device": name, "torch": torch.__version__,
                              "batches": list(sz["batches"]), "workers": list(sz["workers"]),
                              "teacher_batches": list(sz["teacher_batches"]),
                              "ds_steps": sz["ds_steps"]}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "ds"
        if args.data is None:
            result["prepared"] = prepare(root, sz["molecules"], sz["per_shard"])
        result.update(measure(root, sz, device))
    result["wall_s"] = round(time.time() - t_start, 1)
    print(table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
