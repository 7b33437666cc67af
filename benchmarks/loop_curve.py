"""The correction loop's learning curve: does one-click fine-tuning help a new clinic?

A "new clinic" is the generator seen through another camera (``model_zoo.datasets.camera``,
profile ``clinic-b`` by default), split by patient into a pool the grader corrects, the locked
hold-out and a test split. For each budget N and each way of choosing which images to correct
(random and the triage orderings), a simulated grader corrects N pool images with their true
grades, the one-click fine-tune runs exactly as the GUI starts it (``sall-train finetune --init
M --manifest C --holdout H --out R``, nothing else) and the candidate is scored on the clinic's
test split and on the original camera's test split. Baselines: the parent as it is, AdaBN (the
parent's BatchNorm statistics re-estimated on the N corrected images, no labels) and the same
recipe started from random weights instead of the parent ("scratch").

    python benchmarks/loop_curve.py              # quick: N = 200, random, 3 seeds + baselines
    python benchmarks/loop_curve.py --full       # the curve: N = 50/100/200/all x orderings
    python benchmarks/loop_curve.py --dr-only    # the corrections carry DR grades only

Results print as a table (mean and 95 % t-interval over seeds) and go to
``build/loop-bench/results.json``; ``docs/loop-benchmark.md`` holds the figures with their
date and machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import random
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_zoo.datasets.benchmark import write_synthetic_dataset  # noqa: E402
from model_zoo.datasets.camera import camera_profile  # noqa: E402
from model_zoo.metrics import head_metrics  # noqa: E402
from training.protocol.manifest import ManifestRow, format_manifest  # noqa: E402

DEMO = ROOT / "model_zoo" / "weights" / "demo"
ORIGINAL = {"n": 300, "seed": 2025, "size": 256, "splits": (0.0, 0.0, 1.0)}
"""The original camera's test set: eyes drawn like the demo model's own data (``make
demo-model``, seed 2024) but new to it, and not its reference set (that is its test split),
so the gate never chose on the images the benchmark reports."""
CLINIC = {"n": 800, "seed": 7001, "size": 256, "splits": (0.5, 0.0, 0.25, 0.25)}
"""The new clinic: half its patients in the pool to correct, a quarter each hold-out and test."""
ORDERINGS = ("random", "uncertainty", "referable")
NO_REPLAY = ["--set", "finetune.replay_ratio=0"]
VAL_FRACTION = 0.2
"""The GUI's share of the corrections kept for validation (``freeze_finetune``)."""


@dataclass(frozen=True)
class Scores:
    """One model on one test set."""

    dr_qwk: float
    amd_qwk: float
    dr_accuracy: float
    referable_sensitivity: float
    referable_specificity: float


@dataclass(frozen=True)
class Outcome:
    """One point of the curve."""

    method: str
    ordering: str
    n: int
    seed: int
    clinic: Scores
    original: Scores
    seconds: float
    gate: str = ""


def prepare(work: Path, camera: str) -> dict[str, list[ManifestRow]]:
    """Render (once, cached) both cameras' data; rows carry the true grades, gradable only."""
    sets: dict[str, list[ManifestRow]] = {}
    for name, spec, profile in (
        (f"original-{ORIGINAL['seed']}", ORIGINAL, None),
        (f"clinic-{camera}", CLINIC, camera_profile(camera)),
    ):
        folder = work / name
        cache = folder / "samples.json"
        if not cache.exists():
            samples = write_synthetic_dataset(
                folder,
                int(spec["n"]),  # type: ignore[call-overload]
                seed=int(spec["seed"]),  # type: ignore[call-overload]
                size=int(spec["size"]),  # type: ignore[call-overload]
                dicom_fraction=0.0,
                workers=2,
                split_fractions=spec["splits"],  # type: ignore[arg-type]
                camera=profile,
            )
            keep = [
                [
                    s.file_name,
                    s.sha256,
                    s.patient_id,
                    s.laterality,
                    s.spec.dr_grade,
                    s.spec.amd_grade,
                    s.split,
                ]
                for s in samples
                if s.spec.gradable
            ]
            cache.write_text(json.dumps(keep))
        key = "original" if profile is None else "clinic"
        for file, sha, patient, lat, dr, amd, split in json.loads(cache.read_text()):
            row = ManifestRow(str(folder / file), sha, patient, lat, dr, amd, True, "train")
            sets.setdefault(f"{key}_{split}", []).append(row)
    return sets


def probabilities(model_dir: Path, rows: Sequence[ManifestRow]) -> dict[str, np.ndarray]:
    """Calibrated class probabilities of the checkpoint on ``rows`` (eval mode, card inputs)."""
    import torch

    from model_zoo.checkpoints import load_checkpoint
    from training.engine.calibration import softmax
    from training.engine.evaluate import predict
    from training.protocol.config import TrainConfig

    model, card = load_checkpoint(model_dir, device="cpu")
    preds = predict(model, card, rows, Path("/"), cfg=TrainConfig(), device=torch.device("cpu"))  # type: ignore[arg-type]
    return {k: softmax(z, card.temperatures.get(k, 1.0)) for k, z in preds.logits.items()}


def scores(rows: Sequence[ManifestRow], probs: dict[str, np.ndarray]) -> Scores:
    dr = np.array([-1 if r.dr_grade is None else r.dr_grade for r in rows])
    amd = np.array([-1 if r.amd_grade is None else r.amd_grade for r in rows])
    m_dr = head_metrics(dr, probs["dr"], 5, referable_from=2)
    m_amd = head_metrics(amd, probs["amd"], 4)
    return Scores(
        dr_qwk=float(m_dr["qwk"]),  # type: ignore[arg-type]
        amd_qwk=float(m_amd["qwk"]),  # type: ignore[arg-type]
        dr_accuracy=float(m_dr["accuracy"]),  # type: ignore[arg-type]
        referable_sensitivity=float(m_dr["referable_sensitivity"]),  # type: ignore[arg-type]
        referable_specificity=float(m_dr["referable_specificity"]),  # type: ignore[arg-type]
    )


def choose(
    pool: Sequence[ManifestRow], ordering: str, n: int, seed: int, probs: dict[str, np.ndarray]
) -> list[ManifestRow]:
    """The N pool images a grader corrects first under ``ordering`` (the triage queue's
    scores computed from the parent's predictions; ties and ``random`` seeded)."""
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in pool]
    if ordering == "random":
        key = tiebreak
    elif ordering == "uncertainty":
        entropy = sum(-(p * np.log(np.clip(p, 1e-12, 1))).sum(1) for p in probs.values())
        key = list(-entropy)
    elif ordering == "referable":
        ref = probs["dr"][:, 2:].sum(1)
        key = list(-np.minimum(ref, 1 - ref))
    else:
        raise ValueError(f"unknown ordering {ordering!r}")
    order = sorted(range(len(pool)), key=lambda i: (key[i], tiebreak[i]))
    return [pool[i] for i in order[:n]]


def corrections(chosen: Sequence[ManifestRow], seed: int, dr_only: bool) -> list[ManifestRow]:
    """The frozen corrections manifest as the GUI writes it: a patient-grouped validation
    share, and (``dr_only``) the AMD grade left blank as a DR-only grader leaves it."""
    from sall_desktop.services.holdout import split_by_patient

    _, val = split_by_patient([(r.sha256, r.patient_id) for r in chosen], VAL_FRACTION, seed)
    return [
        dataclasses.replace(
            r,
            split="val" if r.sha256 in val else "train",
            amd_grade=None if dr_only else r.amd_grade,
        )
        for r in chosen
    ]


def one_click(init: Path, manifest: Path, holdout: Path, out: Path, extra: Sequence[str]) -> str:
    """``sall-train finetune`` in this process (the GUI's command line); returns the gate."""
    from training.cli import main

    # A run folder holding an earlier run's finished stage would be taken as done: start clean.
    shutil.rmtree(out, ignore_errors=True)
    argv = ["finetune", "--init", str(init), "--manifest", str(manifest)]
    argv += ["--holdout", str(holdout), "--out", str(out), *extra]
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise RuntimeError(f"finetune exited {code}; see {out}/train.log")
    report = json.loads((out / "report.json").read_text())
    gate = report.get("gate") or {}
    return str(gate.get("status", "passed" if gate.get("passed") else "failed"))


def adabn(parent: Path, rows: Sequence[ManifestRow], out: Path) -> Path:
    """The parent with BatchNorm running statistics re-estimated on ``rows`` (no labels)."""
    import torch

    from model_zoo.checkpoints import load_checkpoint, save_checkpoint
    from training.engine.data import ImageDataset

    model, card = load_checkpoint(parent, device="cpu")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over every batch
    model.train()
    data = ImageDataset(rows, Path("/"), card, augment=False, preload=True)
    with torch.no_grad():
        for start in range(0, len(data), 32):
            model(torch.stack([data[i][0] for i in range(start, min(len(data), start + 32))]))
    model.eval()
    save_checkpoint(model, card, out)  # type: ignore[arg-type]
    return out


def scratch_parent(parent: Path, out: Path, seed: int) -> Path:
    """A checkpoint of the parent's architecture and card with freshly initialised weights."""
    import torch

    from model_zoo.checkpoints import load_checkpoint, save_checkpoint
    from model_zoo.registry import get_model

    _, card = load_checkpoint(parent, device="cpu")
    torch.manual_seed(seed)
    kwargs = {**card.architecture_kwargs, "pretrained": False}
    model = get_model(card.architecture, tasks=card.tasks, **kwargs)
    save_checkpoint(
        model, dataclasses.replace(card, temperatures={t.name: 1.0 for t in card.tasks}), out
    )
    return out


def write(path: Path, rows: Sequence[ManifestRow]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_manifest(list(rows)), encoding="utf-8")
    return path


def summary(values: Sequence[float]) -> str:
    """Mean and 95 % t-interval half-width over seeds."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "—"
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return f"{mean:.2f}"
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(len(finite), 2.0)
    half = t * statistics.stdev(finite) / math.sqrt(len(finite))
    return f"{mean:.2f} ± {half:.2f}"


def _outcome(data: dict[str, object]) -> dict[str, object]:
    """An :class:`Outcome`'s fields from its JSON, with the nested scores rebuilt."""
    return {**data, "clinic": Scores(**data["clinic"]), "original": Scores(**data["original"])}  # type: ignore[arg-type]


def table(outcomes: Sequence[Outcome]) -> str:
    groups: dict[tuple[str, str, int], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.method, o.ordering, o.n), []).append(o)
    lines = [
        "| method | ordering | N | seeds | clinic DR QWK | clinic AMD QWK | clinic ref. sens. "
        "| clinic ref. spec. | original DR QWK | original AMD QWK | gate | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, ordering, n), group in groups.items():
        gated = [o.gate for o in group if o.gate]
        gates = f"{gated.count('passed')}/{len(gated)} passed" if gated else "—"
        lines.append(
            f"| {method} | {ordering} | {n} | {len(group)} "
            f"| {summary([o.clinic.dr_qwk for o in group])} "
            f"| {summary([o.clinic.amd_qwk for o in group])} "
            f"| {summary([o.clinic.referable_sensitivity for o in group])} "
            f"| {summary([o.clinic.referable_specificity for o in group])} "
            f"| {summary([o.original.dr_qwk for o in group])} "
            f"| {summary([o.original.amd_qwk for o in group])} "
            f"| {gates} | {statistics.fmean(o.seconds for o in group):.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="every budget and ordering")
    parser.add_argument("--sizes", type=int, nargs="*", help="budgets N (0 = the whole pool)")
    parser.add_argument("--orderings", nargs="*", choices=ORDERINGS, help="how N is chosen")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point (>= 3 for CIs)")
    parser.add_argument("--camera", default="clinic-b", help="the new clinic's camera profile")
    parser.add_argument("--dr-only", action="store_true", help="corrections without AMD grades")
    parser.add_argument("--no-baselines", action="store_true", help="skip AdaBN and scratch")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "loop-bench")
    parser.add_argument("--out", type=Path, help="results JSON (default WORK/results.json)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="config override for the fine-tune (experiments only: the GUI passes none)",
    )
    parser.add_argument("--first-seed", type=int, default=0, help="seeds start here")
    parser.add_argument(
        "--no-finetune", action="store_true", help="baselines only (with --first-seed, to fill in)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        help="print one table from earlier results files; run nothing",
    )
    args = parser.parse_args(argv)
    if args.report:
        merged = [Outcome(**_outcome(d)) for f in args.report for d in json.loads(f.read_text())]
        parents = [o for o in merged if o.method == "parent"]
        merged = parents[:1] + [o for o in merged if o.method != "parent"]  # one parent row
        print(table(merged))
        return 0
    sizes = args.sizes or ([50, 100, 200, 0] if args.full else [200])
    orderings = args.orderings or (list(ORDERINGS) if args.full else ["random"])
    extra = [a for o in args.overrides for a in ("--set", o)]
    work: Path = args.work.resolve()
    # Runs with different overrides keep their own folders, so experiments never collide.
    tag = hashlib.sha256(" ".join(args.overrides).encode()).hexdigest()[:8] if extra else "default"
    started = time.perf_counter()
    sets = prepare(work, args.camera)
    print(
        f"data: original test {len(sets['original_test'])}, clinic pool "
        f"{len(sets['clinic_train'])}, hold-out {len(sets['clinic_holdout'])}, test "
        f"{len(sets['clinic_test'])} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    holdout = write(work / "holdout.csv", sets["clinic_holdout"])
    pool = sets["clinic_train"]
    pool_probs = probabilities(DEMO, pool)
    outcomes: list[Outcome] = []

    def score(
        method: str, ordering: str, n: int, seed: int, model: Path, t0: float, gate: str = ""
    ) -> None:
        seconds = time.perf_counter() - t0
        clinic = scores(sets["clinic_test"], probabilities(model, sets["clinic_test"]))
        original = scores(sets["original_test"], probabilities(model, sets["original_test"]))
        outcomes.append(Outcome(method, ordering, n, seed, clinic, original, seconds, gate))
        print(
            f"{method:9} {ordering:11} N={n:<4} seed={seed} clinic DR {clinic.dr_qwk:.2f} "
            f"AMD {clinic.amd_qwk:.2f} sens {clinic.referable_sensitivity:.2f} | original DR "
            f"{original.dr_qwk:.2f} AMD {original.amd_qwk:.2f} | {gate or '-'} {seconds:.0f} s",
            flush=True,
        )

    if args.first_seed == 0:
        score("parent", "—", 0, 0, DEMO, time.perf_counter())
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for n in [] if args.no_finetune else sizes:
            budget = n or len(pool)
            for ordering in orderings:
                t0 = time.perf_counter()
                chosen = choose(pool, ordering, budget, seed, pool_probs)
                run = (
                    work
                    / "runs"
                    / tag
                    / f"{ordering}-{budget}-{seed}{'-dr' if args.dr_only else ''}"
                )
                manifest = write(run / "corrections.csv", corrections(chosen, seed, args.dr_only))
                gate = one_click(DEMO, manifest, holdout, run / "out", extra)
                score("finetune", ordering, budget, seed, run / "out" / "model", t0, gate)
        if args.no_baselines:
            continue
        budget = 200 if 200 in sizes else (sizes[0] or len(pool))
        chosen = choose(pool, "random", budget, seed, pool_probs)
        run = work / "runs" / tag / f"baselines-{budget}-{seed}"
        t0 = time.perf_counter()
        score("adabn", "random", budget, seed, adabn(DEMO, chosen, run / "adabn"), t0)
        t0 = time.perf_counter()
        init = scratch_parent(DEMO, run / "scratch-init", seed)
        manifest = write(run / "corrections.csv", corrections(chosen, seed, args.dr_only))
        # From scratch there is no parent domain to keep: the corrections alone, same recipe.
        gate = one_click(init, manifest, holdout, run / "scratch", [*extra, *NO_REPLAY])
        score("scratch", "random", budget, seed, run / "scratch" / "model", t0, gate)
    print()
    print(table(outcomes))
    out = args.out or work / "results.json"
    out.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=1))
    print(f"\n{len(outcomes)} points in {time.perf_counter() - started:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
