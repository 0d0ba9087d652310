"""`acml <subcommand> [--cfg job] [hydra overrides...]`.

Each subcommand composes its Hydra config (configs/<entry>.yaml), then calls one library function. Imports
are lazy so that `acml --help` answers at once; torch, Ray, DeepSpeed and MLflow load only when a stage runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from acml_dist.errors import run_main

EPILOG = """\
Overrides are Hydra's: key=value (data.limit=20000), group=option (teachers=fingerprint), +key=value.
`acml <subcommand> --cfg job` prints the resolved configuration and exits.
Examples:
  acml featurize input=molecules.csv.gz data.smiles_column=SMILES name=mycorpus
  acml embed name=mycorpus teachers=smiles_fp
  acml train name=mycorpus trainer.epochs=5
  acml evaluate model=models:/acml-gin@champion name=mycorpus
  acml finetune data.path=train.csv data.targets=[y] model=runs/mycorpus/model
  acml finetune data.path=bench.csv data.targets=[y] data.split=column register=my-property-model
  acml embed-smiles input=smiles.csv output=emb.parquet model=models:/acml-gin@champion
  acml predict predictor=runs/finetune/finetune/predictors input=new.csv output=predicted.csv
  acml pipeline data.limit=5000
  acml nmr-predict name=mycorpus limit=5000 nuclei=[13C,1H]
  acml import-spectra name=mycorpus files=[gnps.mgf] modality=lcms kind=ms mz_resolution=0.01
  acml pretrain-teacher nmr13c name=mycorpus target=rxnfp epochs=60
  acml register-release tracking.tracking_uri=http://127.0.0.1:5000
  acml depict name=mycorpus limit=50000
  acml pretrain-teacher image name=mycorpus target=rxnfp epochs=20
"""


@dataclass(frozen=True)
class Command:
    entry: str  # config entry (configs/<entry>.yaml)
    target: str  # "module:function" called with the composed config
    help: str
    choices: tuple[tuple[str, str], ...] = ()  # a positional before the overrides: (value, help) pairs


COMMANDS: dict[str, Command] = {
    "featurize": Command(
        "featurize",
        "acml_dist.data.featurize:featurize_corpus",
        "Standardise, dedupe, split and featurise a corpus into packed shards (Ray).",
    ),
    "embed": Command(
        "embed",
        "acml_dist.teachers.cache:embed_dataset",
        "Embed featurised shards with frozen teachers into a float16 cache (Ray actor pool).",
    ),
    "train": Command(
        "train",
        "acml_dist.train:run",
        "Train the GIN and heads against the teachers (single process; use `deepspeed` for ranks).",
    ),
    "evaluate": Command(
        "evaluate",
        "acml_dist.evaluate:evaluate",
        "Retrieval, isomer discrimination, property prediction and probing; writes EVALUATION.md.",
    ),
    "finetune": Command(
        "finetune",
        "acml_dist.evaluate:finetune",
        "Fine-tune / linear-probe the pretrained GIN on a labelled CSV / TSV / Parquet / SDF (or a "
        "registered dataset) against a from-scratch GIN; test predictions in predictions.csv; the "
        "fine-tuned predictors kept for `acml predict` (register=NAME: also in the MLflow registry).",
    ),
    "embed-smiles": Command(
        "embed_smiles",
        "acml_dist.serving:embed_smiles_file",
        "Embed a molecule file (CSV / TSV / Parquet / .smi / SDF) with a trained model into a parquet file.",
    ),
    "predict": Command(
        "predict",
        "acml_dist.evaluate.predict_job:predict_file",
        "Predict properties for a molecule file with the predictors `acml finetune` kept (one seed or all; "
        "a folder, runs:/ or models:/ URI).",
    ),
    "pipeline": Command(
        "pretrain",
        "acml_dist.pipeline:run_pipeline",
        "The whole pipeline in this process: featurise -> embed -> train -> evaluate -> register.",
    ),
    "serve": Command(
        "serve",
        "acml_dist.serving:serve_model",
        "Serve a registered model over REST (`mlflow models serve`, local environment).",
    ),
    "nmr-predict": Command(
        "nmr_predict",
        "acml_dist.data.nmr_stage:predict_dataset",
        "Predicted 13C / 1H NMR spectra (csp5) for a subset of a featurised dataset (Ray, resumable).",
    ),
    "depict": Command(
        "depict",
        "acml_dist.data.image_stage:depict_dataset",
        "Img2Mol-preprocessed 224x224 depictions (uint8) for a subset of a featurised dataset (Ray).",
    ),
    "import-spectra": Command(
        "import_spectra",
        "acml_dist.data.spectra_import:import_spectra_job",
        "Pair experimental spectra (MGF, MSP, JCAMP-DX, NMRShiftDB SDF) with a dataset's molecules, binned.",
    ),
    "pretrain-teacher": Command(
        "pretrain_teacher",
        "acml_dist.training.teacher_job:pretrain_teacher_job",
        "Train a spectrum / image teacher against a cached SMILES teacher; MLflow run + registry.",
        (
            ("nmr13c", "CReSS 13C encoder (4,000 bins) on modalities/nmr13c (acml nmr-predict / import)."),
            ("nmr1h", "1-D conv encoder (Conv1d 1-32-16-8-1, k=7) on modalities/nmr1h."),
            ("ms", "1-D conv encoder on imported mass spectra (acml import-spectra kind=ms)."),
            ("image", "Img2Mol-style CNN regressing the SMILES teacher's embedding (acml depict images)."),
        ),
    ),
    "register-release": Command(
        "register_release",
        "acml_dist.tracking:register_release",
        "Register the encoder shipped in release/ as models:/acml-gin-release@champion in your MLflow.",
    ),
    "teacher-sanity": Command(
        "embed",
        "acml_dist.cli:teacher_sanity",
        "Check that a teacher's embedding neighbours are chemically similar (Tanimoto vs random pairs).",
    ),
}


def teacher_sanity(cfg) -> dict:
    """`acml teacher-sanity name=NAME [teachers=...]`: kNN Tanimoto check of each cached teacher."""
    from acml_dist.context import dataset_dir
    from acml_dist.teachers.sanity import teacher_sanity as check

    root = dataset_dir(cfg)
    results = {}
    for name in cfg.teachers:
        r = check(root, name)
        results[name] = r
        print(
            f"teacher {name} ({r['molecules']} {r['split']} molecules): mean Tanimoto of {r['k']} nearest "
            f"neighbours {r['knn_tanimoto']:.3f} vs random pairs {r['random_tanimoto']:.3f} (x{r['ratio']})"
        )
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acml",
        description="acml-dist: distributed ACML pretraining of molecular graph encoders.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="<subcommand>")
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=f"{command.help}\nConfig: configs/{command.entry}.yaml",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        targets = [p]
        if command.choices:  # `acml <subcommand> <choice> [overrides]`, each choice with its own --help
            names = ",".join(c for c, _ in command.choices)
            sub2 = p.add_subparsers(dest="choice", metavar="{" + names + "}")
            targets = [sub2.add_parser(c, help=h, description=f"{command.help}\n{c}: {h}", epilog=EPILOG,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
                       for c, h in command.choices]  # fmt: skip
        for t in targets:
            t.add_argument("--cfg", choices=["job"], help="print the resolved configuration and exit")
            t.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.lr=3e-4")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    if command.choices:
        if not getattr(args, "choice", None):
            names = ", ".join(c for c, _ in command.choices)
            print(f"acml {args.command}: name one of {names} (acml {args.command} --help)", file=sys.stderr)
            return 2
        args.overrides = [f"modality={args.choice}", *args.overrides]

    return run_main(f"acml {args.command}", lambda: run_command(command, args.overrides, args.cfg == "job"))


def run_command(command: Command, overrides: list[str], show_config: bool = False) -> int:
    """Compose the command's config and call its function; 1 when the stage reports `"ok": False`."""
    from acml_dist.config import load_config, to_yaml

    cfg = load_config(command.entry, overrides, complete=not show_config)
    if show_config:
        print(to_yaml(cfg))
        return 0
    module_name, function_name = command.target.split(":")
    result = getattr(importlib.import_module(module_name), function_name)(cfg)
    # Stages return a dict; a stage that failed its own checks says so with "ok": False.
    return 1 if isinstance(result, dict) and result.get("ok") is False else 0


if __name__ == "__main__":
    sys.exit(main())
