"""Checks a composed config must pass before any stage runs: every key known to the schema (a typo such as
`trainer.micro_bach` or a stray `+foo=1` names the key and the nearest known one), every mandatory value
set, and every value possible (`trainer.micro_batch=0`, `trainer.epochs=-1`, a negative learning rate...).
Each failure is one `ConfigError` line naming the key; no OmegaConf internals."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from acml_dist.config.eval import CHIRALITY_MODES, SCHEDULES, SPLIT_KINDS
from acml_dist.errors import ConfigError

# RDKit's SMILES writer segfaults on molecules of ~20,000 atoms: a featurise run (or a served model) must not
# let one through. 5,000 leaves a wide margin and covers every PubChem small molecule.
MAX_HEAVY_ATOMS_LIMIT = 5000

Rule = tuple[str, Callable[[Any], bool], str]


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _num(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and test(v)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _one_of_text(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


POSITIVE_INT, NON_NEGATIVE_INT = _int_at_least(1), _int_at_least(0)
POSITIVE, NON_NEGATIVE = _num(lambda v: v > 0), _num(lambda v: v >= 0)
FRACTION = _num(lambda v: 0 <= v < 1)

RULES: list[Rule] = [
    ("trainer.micro_batch", POSITIVE_INT, "an integer >= 1"),
    ("trainer.grad_accum", POSITIVE_INT, "an integer >= 1"),
    ("trainer.epochs", POSITIVE_INT, "an integer >= 1"),
    ("trainer.max_steps", _optional(POSITIVE_INT), "null or an integer >= 1"),
    ("trainer.max_minutes", _optional(POSITIVE), "null or a number > 0"),
    ("trainer.lr", POSITIVE, "a number > 0"),
    ("trainer.weight_decay", NON_NEGATIVE, "a number >= 0"),
    ("trainer.warmup_steps", NON_NEGATIVE_INT, "an integer >= 0"),
    ("trainer.grad_clip", NON_NEGATIVE, "a number >= 0 (0: no clipping)"),
    ("trainer.zero_stage", lambda v: v in (0, 1, 2, 3), "0, 1, 2 or 3"),
    ("trainer.precision", _one_of("auto", "fp32", "bf16", "fp16"), "auto, fp32, bf16 or fp16"),
    ("trainer.checkpoint_every", NON_NEGATIVE_INT, "an integer >= 0 (0: only at the end)"),
    ("trainer.log_every", POSITIVE_INT, "an integer >= 1"),
    ("trainer.eval_every", NON_NEGATIVE_INT, "an integer >= 0"),
    ("trainer.max_bad_steps", POSITIVE_INT, "an integer >= 1"),
    ("trainer.num_workers", NON_NEGATIVE_INT, "an integer >= 0"),
    ("trainer.buffer_shards", POSITIVE_INT, "an integer >= 1"),
    ("trainer.backend", _one_of("auto", "nccl", "gloo"), "auto, nccl or gloo"),
    ("loss.kind", _one_of("clip", "acml_soft"), "clip or acml_soft"),
    ("loss.init_logit_scale", POSITIVE, "a number > 0"),
    ("loss.max_logit_scale", POSITIVE, "a number > 0"),
    ("model.schema", _one_of("hu", "ogb"), "hu or ogb"),
    ("model.num_layers", POSITIVE_INT, "an integer >= 1"),
    ("model.emb_dim", POSITIVE_INT, "an integer >= 1"),
    ("model.proj_dim", POSITIVE_INT, "an integer >= 1"),
    ("model.head_layers", POSITIVE_INT, "an integer >= 1"),
    ("model.dropout", FRACTION, "a number in [0, 1)"),
    ("model.head_dropout", FRACTION, "a number in [0, 1)"),
    ("model.jk", _one_of("last", "sum", "concat"), "last, sum or concat"),
    ("model.pooling", _one_of("sum", "mean", "max", "attention"), "sum, mean, max or attention"),
    ("data.limit", _optional(POSITIVE_INT), "null or an integer >= 1"),
    ("data.samples_per_shard", POSITIVE_INT, "an integer >= 1"),
    ("data.chunk_size", POSITIVE_INT, "an integer >= 1"),
    ("data.stereoisomers", NON_NEGATIVE_INT, "an integer >= 0 (0: molecules as read)"),
    ("data.split", _one_of(*SPLIT_KINDS), _one_of_text(SPLIT_KINDS)),  # a corpus: featurize refuses all but 2
    ("data.dedupe_by", _one_of("inchikey", "smiles"), "inchikey or smiles"),
    ("data.task", _one_of("auto", "regression", "classification"), "auto, regression or classification"),
    ("data.standardize.min_heavy_atoms", NON_NEGATIVE_INT, "an integer >= 0"),
    (
        "data.standardize.max_heavy_atoms",
        lambda v: POSITIVE_INT(v) and v <= MAX_HEAVY_ATOMS_LIMIT,
        f"an integer from 1 to {MAX_HEAVY_ATOMS_LIMIT} (RDKit's SMILES writer crashes near 20,000 atoms)",
    ),
    ("batch_size", POSITIVE_INT, "an integer >= 1"),
    # eval: the fine-tuning recipe (`acml finetune`, evaluate's property section); `check_recipe` below
    ("eval.batch_size", _int_at_least(2), "an integer >= 2 (BatchNorm)"),
    ("eval.finetune_epochs", POSITIVE_INT, "an integer >= 1"),
    ("eval.patience", POSITIVE_INT, "an integer >= 1"),
    ("eval.lr", POSITIVE, "a number > 0"),
    ("eval.weight_decay", NON_NEGATIVE, "a number >= 0"),
    ("eval.warmup", FRACTION, "a fraction of the steps in [0, 1)"),
    ("eval.final_lr", _num(lambda v: 0 <= v <= 1), "a fraction of lr in [0, 1]"),
    ("eval.schedule", _one_of(*SCHEDULES), _one_of_text(SCHEDULES)),
    ("eval.ema", FRACTION, "a decay per step in [0, 1) (0: off)"),
    ("eval.workers", NON_NEGATIVE_INT, "an integer >= 0 (0: one process per free core, 1: this process)"),
    ("eval.chirality", _one_of(*CHIRALITY_MODES), _one_of_text(CHIRALITY_MODES)),
    ("eval.scratch_schema", _one_of("", "hu", "ogb"), "hu, ogb or empty (the pretrained encoder's)"),
    ("eval.mol_features", _one_of("", "rdkit2d"), "rdkit2d or empty (none)"),
    ("eval.split_kind", _one_of(*SPLIT_KINDS), _one_of_text(SPLIT_KINDS)),
    ("eval.seeds", lambda v: len(v) > 0 and all(NON_NEGATIVE_INT(s) for s in v), "a non-empty list of seeds"),
    ("cluster.num_cpus", _optional(POSITIVE_INT), "null or an integer >= 1"),
    ("cluster.embed_actors", POSITIVE_INT, "an integer >= 1"),
    ("cluster.train_workers", POSITIVE_INT, "an integer >= 1"),
    ("cluster.featurize_workers", NON_NEGATIVE_INT, "an integer >= 0 (0: one per CPU)"),
]
TEACHER_RULES: list[Rule] = [
    ("batch_size", POSITIVE_INT, "an integer >= 1"),
    ("weight", NON_NEGATIVE, "a number >= 0"),
    ("source", _one_of("cache", "online"), "cache or online"),
    ("cpu_threads", NON_NEGATIVE_INT, "an integer >= 0"),
]


def unknown_keys(schema: Any, raw: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Keys of `raw` the structured `schema` does not have: (full key, known keys at that level)."""
    found = []
    if not (isinstance(schema, DictConfig) and isinstance(raw, DictConfig)):
        return found
    typed = is_dataclass(OmegaConf.get_type(schema))
    known = [str(k) for k in schema.keys()]  # `in schema` is False for a key whose value is ??? (missing)
    for key in raw.keys():
        full = f"{prefix}{key}"
        if typed and key not in known:
            found.append((full, known))
        elif key in known:
            found += unknown_keys(schema._get_node(key), raw._get_node(key), full + ".")
    return found


def unknown_key_message(full: str, known: list[str]) -> str:
    parent, _, leaf = full.rpartition(".")
    near = difflib.get_close_matches(leaf, known, n=1)
    hint = f"; did you mean {'.'.join(filter(None, [parent, near[0]]))}?" if near else ""
    return f"unknown key {full!r}{hint} (`acml <command> --cfg job` lists the keys)"


def check_values(cfg: DictConfig) -> list[str]:
    """One message per impossible value in `cfg` (keys absent from this entry's schema are skipped)."""
    problems = []
    absent = object()
    for key, ok, rule in RULES:
        value = OmegaConf.select(cfg, key, default=absent, throw_on_missing=False)
        if value is not absent and not ok(value):
            problems.append(f"{key}={value!r}: must be {rule}")
    fractions = OmegaConf.select(cfg, "data.split_fractions", default=None)
    if fractions is not None:
        values = list(fractions)
        if len(values) != 3 or any(not NON_NEGATIVE(v) for v in values) or abs(sum(values) - 1) > 1e-6:
            problems.append(f"data.split_fractions={values}: must be three numbers >= 0 summing to 1")
    low = OmegaConf.select(cfg, "data.standardize.min_heavy_atoms", default=None)
    high = OmegaConf.select(cfg, "data.standardize.max_heavy_atoms", default=None)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        problems.append(f"data.standardize.min_heavy_atoms={low} is above max_heavy_atoms={high}")
    for name, teacher in (OmegaConf.select(cfg, "teachers", default=None) or {}).items():
        for key, ok, rule in TEACHER_RULES:
            if key in teacher and not ok(teacher[key]):
                problems.append(f"teachers.{name}.{key}={teacher[key]!r}: must be {rule}")
    return problems


def missing_values(cfg: DictConfig) -> list[str]:
    """Full keys of mandatory values (`???`) still unset."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, DictConfig):
            for key in node.keys():
                if OmegaConf.is_missing(node, key):
                    out.append(f"{prefix}{key}")
                else:
                    walk(node._get_node(key), f"{prefix}{key}.")

    walk(cfg, "")
    return out


def check_recipe(ecfg: Any, split_kind: str) -> None:
    """The `eval` rules above applied to a fine-tuning recipe on its own (`acml finetune` splits by
    `data.split`, evaluate by `eval.split_kind`), before any data is read: ConfigError naming the key."""
    section = OmegaConf.to_container(ecfg, resolve=True) if isinstance(ecfg, DictConfig) else dict(ecfg)
    problems = check_values(OmegaConf.create({"eval": {**section, "split_kind": split_kind}}))
    if problems:
        raise ConfigError(problems[0])
