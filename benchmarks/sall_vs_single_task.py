"""SALL vs single-task baselines on the synthetic DR/AMD benchmark under label scarcity.

For each seed: write a synthetic dataset (DR-labelled and AMD-labelled training sets, a fully
labelled test set), train the two single-task teachers (the baseline), cache their soft labels,
then train three students from the same teachers:

* ``masked``: multi-task with masked losses (hard labels only: ``sall.kd_weight = 0``,
  ``feature_term = none``);
* ``semantic``: SALL semantic space only (``feature_term = none``);
* ``semantic+feature``: SALL with the ``hint`` feature term (the default).

Every model is evaluated on the test split; the table gives the mean and the 95 % confidence
interval (t distribution over seeds) of accuracy and QWK per task, and of the paired difference
each student minus single-task. Runs in-process on the device ``--device`` selects.

    .venv/bin/python benchmarks/sall_vs_single_task.py [--seeds 5] [--json seeds.json] \\
        [--out table.md]     # the docs/sall-benchmark.md campaign (defaults; ~1 h on 2 CPU cores)
    .venv/bin/python benchmarks/sall_vs_single_task.py --from-json seeds.json  # table only
    .venv/bin/python benchmarks/sall_vs_single_task.py --quick     # smoke run, a minute on a CPU

The defaults are the scale of the published campaign (``docs/sall-benchmark.md``): ResNet-18 from
scratch at 96 px on 600 synthetic images per seed, Adam 1e-3 with a cosine schedule, 8 epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from model_zoo.architectures.student import SallStudent
from model_zoo.cards import ModelCard
from model_zoo.datasets.benchmark import write_synthetic_dataset
from model_zoo.fileio import atomic_write_text
from training.engine.context import RunContext
from training.engine.data import select_rows
from training.engine.evaluate import evaluation, predict
from training.engine.runlog import EventSink, StopWatcher, run_logging
from training.engine.sall.pipeline import RunInputs, soft_labels, train_student, train_teacher
from training.protocol.config import TrainConfig, load_config
from training.synth import manifest_rows

METHODS = ("single-task", "masked", "semantic", "semantic+feature")
# Two-sided 97.5 % quantiles of Student's t for 1..9 degrees of freedom.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)


def ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % half-width (t distribution); half-width NaN for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, T975[min(len(values), 10) - 2] * statistics.stdev(values) / math.sqrt(len(values))


def one_seed(
    seed: int, args: argparse.Namespace, root: Path
) -> dict[str, dict[str, dict[str, float]]]:
    """method -> task -> {"accuracy", "qwk"} on the test split."""
    folder = root / f"data{seed}"
    samples = write_synthetic_dataset(
        folder, args.n, seed=seed, size=args.size, dicom_fraction=0.0, workers=args.workers
    )
    rows = manifest_rows(samples)
    base = [
        f"model.backbone={args.backbone}",
        f"model.input_size={args.input_size}",
        f"optim.max_epochs={args.epochs}",
        f"optim.lr={args.lr}",
        f"optim.batch_size={args.batch}",
        f"optim.schedule={args.schedule}",
        f"optim.warmup_epochs={args.warmup_epochs}",
        f"optim.min_lr_ratio={args.min_lr_ratio}",
        f"optim.patience={args.epochs}",
        f"runtime.seed={seed}",
        f"runtime.device={args.device}",
        "runtime.progress_interval_s=30",
        f"runtime.amp={'true' if args.amp else 'false'}",
        *args.overrides,
    ]
    device = torch.device(args.device)
    test = select_rows(rows, ["test"])
    results: dict[str, dict[str, dict[str, float]]] = {}

    def scores(
        model: SallStudent, card: ModelCard, cfg: TrainConfig
    ) -> dict[str, dict[str, float]]:
        preds = predict(model, card, test, folder, cfg=cfg, device=device)
        ev = evaluation(card, preds, card.temperatures, split="test", cfg=cfg)
        return {
            h.task: {
                "accuracy": math.nan if h.accuracy is None else h.accuracy,
                "qwk": math.nan if h.qwk is None else h.qwk,
            }
            for h in ev.heads
        }

    run_dir = root / f"run{seed}"
    with run_logging(run_dir) as _log:
        sink = EventSink(run_dir, f"bench{seed}", enabled=False)
        with StopWatcher(None, sink, handle_sigterm=False) as stop:
            ctx = RunContext(run_dir, f"bench{seed}", sink, stop, device)
            cfg = load_config(None, base)
            inp = RunInputs(cfg=cfg, rows=rows, base_dir=folder, manifest_digest="", ctx=ctx)
            teachers = {t.name: train_teacher(inp, t) for t in cfg.sall.tasks}
            results["single-task"] = {}
            for teacher in teachers.values():
                results["single-task"].update(scores(teacher.model, teacher.card, cfg))
            outputs = soft_labels(inp, teachers)
            ids = [t.card.id for t in teachers.values()]
            variants = {
                "masked": ["sall.kd_weight=0", "sall.feature_term=none"],
                "semantic": ["sall.feature_term=none"],
                "semantic+feature": [],
            }
            for method, extra in variants.items():
                vcfg = load_config(None, base + extra)
                vinp = dataclasses.replace(inp, cfg=vcfg)
                student = train_student(vinp, outputs, teacher_ids=ids, stage=f"student-{method}")
                results[method] = scores(student.model, student.card, vcfg)
    return results


def table(all_results: list[dict[str, dict[str, dict[str, float]]]], command: str) -> str:
    lines = [
        f"Seeds: {len(all_results)}. Mean ± 95 % CI half-width (t distribution) on the test split.",
        "",
        "| method | DR accuracy | DR QWK | AMD accuracy | AMD QWK |",
        "|---|---|---|---|---|",
    ]

    def cell(values: list[float]) -> str:
        mean, half = ci(values)
        return f"{mean:.3f} ± {half:.3f}" if math.isfinite(half) else f"{mean:.3f}"

    for method in METHODS:
        cells = [
            cell([r[method][task][metric] for r in all_results])
            for task in ("dr", "amd")
            for metric in ("accuracy", "qwk")
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for method in METHODS[1:]:
        diffs = [
            cell([r[method][task][metric] - r["single-task"][task][metric] for r in all_results])
            for task in ("dr", "amd")
            for metric in ("accuracy", "qwk")
        ]
        lines.append(f"| {method} − single-task (paired) | " + " | ".join(diffs) + " |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--size", type=int, default=96, help="synthetic image side (px)")
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
    parser.add_argument("--warmup-epochs", type=float, default=0.5)
    parser.add_argument("--min-lr-ratio", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 seed, 48 images, 1 epoch")
    parser.add_argument("--workers", type=int, default=1, help="image render threads")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override for every model, e.g. --set optim.schedule=cosine",
    )
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--json", type=Path, help="also write the per-seed results (JSON) here")
    parser.add_argument(
        "--from-json", type=Path, help="only print the table of results saved by --json"
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n, args.size, args.input_size, args.epochs = 1, 48, 64, 64, 1
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        print(table(saved, " ".join(["python", *sys.argv])))
        return
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            t0 = time.monotonic()
            results.append(one_seed(seed, args, Path(tmp)))
            print(f"seed {seed} ({time.monotonic() - t0:.0f} s): {results[-1]}", file=sys.stderr)
            if args.json is not None:  # after every seed: a cut-short campaign keeps its seeds
                atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    minutes = (time.monotonic() - started) / 60
    text = table(results, " ".join(["python", *sys.argv])) + f"Wall time: {minutes:.1f} min.\n"
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
