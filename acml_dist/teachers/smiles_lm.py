"""SMILES language-model teacher on Hugging Face `transformers` (any local BERT/RoBERTa-style directory).

The offline default is rxnfp's MLM-pretrained SMILES BERT (`rxnfp/models/transformers/bert_pretrained`).
That model was trained on reaction SMILES split by the Schwaller SMILES regex with every regex token
looked up whole in its vocab; a WordPiece pass over the joined string would turn `[nH]`, `>>` and friends
into `[UNK]`. So for it (tokenizer="regex") molecules are fed as "SMILES>>", regex-tokenised, ids mapped
straight from the vocab. Other checkpoints (ChemBERTa-like) use their own tokenizer (tokenizer="hf").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from acml_dist.log import get_logger
from acml_dist.teachers.base import Teacher, TeacherError

if TYPE_CHECKING:
    import torch

    from acml_dist.config.teachers import TeacherConfig

log = get_logger("teachers")

# Schwaller et al. SMILES regex (as in rxnfp.tokenization.SMI_REGEX_PATTERN).
SMILES_REGEX = re.compile(
    r"(\%\([0-9]{3}\)|\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\||\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>>?|\*|\$"
    r"|\%[0-9]{2}|[0-9])"
)


def rxnfp_model_dir() -> Path:
    """The rxnfp package's SMILES BERT, found via importlib metadata (rxnfp itself is never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("rxnfp")
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(
            "the default SMILES teacher needs the rxnfp package's model files: "
            "`pip install --no-deps rxnfp==0.1.0`, or set teachers.<name>.path to a local BERT/RoBERTa "
            "directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "transformers" / "bert_pretrained"
    if not (path / "config.json").exists():
        raise TeacherError(f"rxnfp is installed but its model directory is missing: {path}")
    return path


def regex_tokens(text: str) -> list[str]:
    return SMILES_REGEX.findall(text)


def _model_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The padding mask as transformers >= 5 takes it without reading it back: a 2-D mask makes it ask the
    device whether any row is padded (`mask.all()`, masking_utils), a host sync in every online teacher
    call; a prepared 4-D additive mask is used as is. transformers 4.x refuses 4-D masks: 2-D there."""
    import torch

    if _transformers_major() < 5:
        return mask
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


@functools.cache
def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


@dataclass
class RegexTokenizer:
    """rxnfp's tokenisation as a picklable callable: SMILES -> (input_ids, attention_mask), int64, padded."""

    vocab: dict[str, int]
    template: str
    max_length: int
    unk: int
    cls: int
    sep: int
    pad: int

    def __call__(self, smiles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        vocab, unk, rows = self.vocab, self.unk, []
        for smi in smiles:
            ids = [vocab.get(t, unk) for t in regex_tokens(self.template.format(smi))]
            rows.append([self.cls, *ids[: self.max_length - 2], self.sep])
        # One scatter for the whole batch: a per-row tensor copy cost 3x the tokenising (BENCHMARKS.md
        # "GPU benchmark").
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum()))
        valid = np.arange(int(lengths.max(initial=0))) < lengths[:, None]
        input_ids = np.full(valid.shape, self.pad, dtype=np.int64)
        input_ids[valid] = flat
        return torch.from_numpy(input_ids), torch.from_numpy(valid.astype(np.int64))


@dataclass
class HFTokenize:
    """A Hugging Face tokenizer's padded batch as a picklable callable (the `tokenizer="hf"` path)."""

    tokenizer: Any
    template: str
    max_length: int

    def __call__(self, smiles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            [self.template.format(s) for s in smiles],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return enc["input_ids"], enc["attention_mask"]


def _hf_classes(path: Path, model_type: str | None) -> tuple[Any, Any, Any]:
    """Config, model class and tokenizer class; old checkpoints (rxnfp's) lack `model_type`: BERT then."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast
    from transformers.utils import logging as hf_logging

    # The per-key load report lists the MLM head as "unexpected", which is expected for an encoder.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if model_type is None:
        try:
            return AutoConfig.from_pretrained(path), AutoModel, AutoTokenizer
        except ValueError:
            log.info("%s: config.json has no model_type; loading it as BERT", path)
            model_type = "bert"
    if model_type == "bert":
        return BertConfig.from_pretrained(path), BertModel, BertTokenizerFast
    return AutoConfig.for_model(model_type, **BertConfig.get_config_dict(path)[0]), AutoModel, AutoTokenizer


class SmilesLMTeacher(Teacher):
    kind = "smiles_lm"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        params = dict(cfg.params or {})
        default = cfg.path is None
        path = rxnfp_model_dir() if default else Path(cfg.path)
        if not path.is_dir():
            raise TeacherError(f"teacher {name}: {path} is not a model directory (config.json + weights)")
        hf_cfg, model_cls, tok_cls = _hf_classes(path, params.get("model_type"))
        super().__init__(name, cfg, cfg.modality or "smiles", int(hf_cfg.hidden_size))
        self.path = path
        self.pooling = cfg.pooling
        if self.pooling not in ("cls", "mean"):
            raise TeacherError(f"teacher {name}: pooling must be cls or mean, not {self.pooling!r}")
        self.tokenizer = tok_cls.from_pretrained(path)
        self.vocab: dict[str, int] = self.tokenizer.get_vocab()
        # A reaction-SMILES vocabulary (a ">>" token) is rxnfp's wherever the folder lives: tokenise it as
        # rxnfp does. A copy saved by transformers took a user BERT's WordPiece path once, which is another
        # teacher (cosine 0.73 to the default on MOSES; BENCHMARKS.md, GPU benchmark).
        rxnfp_like = default or ">>" in self.vocab
        self.tokenizer_mode = params.get("tokenizer", "regex" if rxnfp_like else "hf")
        self.template = params.get("template", "{}>>" if rxnfp_like else "{}")
        # Positions beyond the model's table would crash; RoBERTa reserves padding_idx + 1 positions.
        max_pos = int(getattr(hf_cfg, "max_position_embeddings", 512))
        if hf_cfg.model_type in ("roberta", "camembert", "xlm-roberta"):
            max_pos -= int(getattr(hf_cfg, "pad_token_id", 1) or 1) + 1
        self.max_length = min(int(cfg.max_length), max_pos)
        self.unknown_tokens = 0
        tok = self.tokenizer
        self.regex = RegexTokenizer(
            self.vocab, self.template, self.max_length, tok.unk_token_id, tok.cls_token_id,
            tok.sep_token_id, tok.pad_token_id or 0,
        )  # fmt: skip
        # add_pooling_layer=False: the pooler is unused (CLS/mean of the last hidden state).
        model = model_cls.from_pretrained(path, config=hf_cfg, add_pooling_layer=False)
        self._finish_model(model)

    def _regex_ids(self, smiles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.regex(smiles)
        self.unknown_tokens += int((ids == self.regex.unk).sum())
        return ids, mask

    def input_fn(self) -> Any:
        """Tokenising runs in the loader's worker processes (picklable), not in the training loop."""
        if self.tokenizer_mode == "regex":
            return self.regex
        return HFTokenize(self.tokenizer, self.template, self.max_length)

    def prepare(self, samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        smiles = [s["smiles"] for s in samples]
        if self.tokenizer_mode == "regex":
            return self._regex_ids(smiles)
        return HFTokenize(self.tokenizer, self.template, self.max_length)(smiles)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        input_ids, mask = (t.to(self.device) for t in inputs)
        assert self.model is not None
        hidden = self.model(input_ids=input_ids, attention_mask=_model_mask(mask, self.dtype))
        hidden = hidden.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def encode_samples(self, samples: list[dict[str, Any]]) -> torch.Tensor:
        """Sort by SMILES length so each chunk pads little, then restore the input order."""
        import torch

        order = sorted(range(len(samples)), key=lambda i: len(samples[i]["smiles"]))
        out = super().encode_samples([samples[i] for i in order])
        result = torch.empty_like(out)
        result[torch.tensor(order, dtype=torch.long)] = out
        return result
