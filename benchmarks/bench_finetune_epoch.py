"""P5: one fine-tune epoch of our loop ÷ a minimal hand-written PyTorch loop (goal <= 1.10).

Both train the same network (``sall_student``, same seed and init) on the same images with the
same batch size, Adam settings and number of steps, one after the other, interleaved over
``--repeats`` rounds; the best time of each is kept. "Our loop" is ``training.engine.loop.fit``
on the fine-tuning objective (hard labels, the parent's soft labels where a grade is missing,
and the ``hint`` feature term with its adapters, as ``sall-train finetune`` runs it). Its epoch
time is measured from the event stream: from the end of the previous epoch to the last training
step (so validation and the checkpoint are excluded and reported separately). The minimal loop is
a ``TensorDataset`` of the already preprocessed images, a shuffling ``DataLoader``, masked
cross-entropy per head, ``backward``, ``step``.

    .venv/bin/python benchmarks/bench_finetune_epoch.py [--n 96] [--size 96] [--batch 16]
        [--backbone resnet18] [--repeats 3] [--threads 0] [--device cpu|cuda] [--amp]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader, TensorDataset

from model_zoo.datasets.benchmark import write_synthetic_dataset
from training.engine.context import RunContext
from training.engine.data import ImageDataset, resolve_labels, select_rows
from training.engine.loop import fit
from training.engine.models import build_card, build_model
from training.engine.runlog import EventSink, StopWatcher
from training.engine.sall.objective import SallObjective, build_targets, semantic_config
from training.engine.sall.soft_labels import ensure_outputs
from training.protocol import events as ev
from training.protocol.config import load_config
from training.protocol.manifest import ManifestRow
from training.synth import manifest_rows


def _rows(folder: Path, n: int, size: int) -> list[ManifestRow]:
    samples = write_synthetic_dataset(folder, n, seed=5, size=size * 2, dicom_fraction=0.0)
    return manifest_rows(samples, split="train")


def ours(cfg, rows, folder, device, run_dir) -> tuple[float, float]:
    """(training seconds of epoch 2, full seconds of epoch 2 incl. checkpoint) of fit()."""
    tasks = list(cfg.sall.tasks)
    torch.manual_seed(cfg.runtime.seed)
    model = build_model(cfg, tasks)
    card = build_card(cfg, tasks, name="bench", run_id="bench", manifest_digest="")
    parent = build_model(cfg, tasks).eval()
    parent_card = card.replace(id="b" * 64)
    train = ImageDataset(rows, folder, card, preload=True)
    outputs, _ = ensure_outputs(
        run_dir / "cache", parent, parent_card, train, device=device, batch_size=64
    )
    hard = resolve_labels(rows, tasks, cfg.sall.normal_policy)
    targets = build_targets(hard, tasks, {t.name: outputs for t in tasks}, feature_term="hint")
    objective = SallObjective(
        model,
        {"train": targets},
        semantic_config(cfg),
        feature_term="hint",
        feature_weight=1.0,
        teacher_dims={t.name: parent.feature_dim for t in tasks},
    )
    sink = EventSink(run_dir, "bench")
    stamps: list[tuple[float, ev.Event]] = []
    sink.subscribe(lambda e: stamps.append((time.perf_counter(), e)))
    with StopWatcher(None, sink, handle_sigterm=False) as stop:
        ctx = RunContext(run_dir, "bench", sink, stop, device)
        fit(
            stage="finetune",
            objective=objective,
            train=train,
            val=None,
            sampling_weights=None,
            card=card,
            cfg=cfg,
            ctx=ctx,
            max_epochs=2,
            resume=False,
        )
    sink.close()
    end0 = next(t for t, e in stamps if isinstance(e, ev.EpochEnd) and e.epoch == 0)
    end1 = next(t for t, e in stamps if isinstance(e, ev.EpochEnd) and e.epoch == 1)
    last_step = max(t for t, e in stamps if isinstance(e, ev.Progress) and e.epoch == 1)
    return last_step - end0, end1 - end0


def minimal(cfg, rows, folder, device, amp: bool) -> float:
    """Seconds of the second epoch of a hand-written loop (same model, data, steps)."""
    tasks = list(cfg.sall.tasks)
    torch.manual_seed(cfg.runtime.seed)
    model = build_model(cfg, tasks).to(device).train()
    card = build_card(cfg, tasks, name="bench", run_id="bench", manifest_digest="")
    data = ImageDataset(rows, folder, card, preload=True)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.as_tensor(resolve_labels(rows, tasks, cfg.sall.normal_policy))
    o = cfg.optim
    loader = DataLoader(TensorDataset(x, y), batch_size=o.batch_size, shuffle=True, drop_last=False)
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    steps = math.ceil(len(rows) / o.batch_size)
    seconds = 0.0
    for _epoch in range(2):
        t0 = time.perf_counter()
        for step, (xb, yb) in enumerate(loader):
            if step == steps:
                break
            xb, yb = xb.to(device), yb.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(xb)
                loss = sum(
                    F.cross_entropy(out.logits[t.name].float(), yb[:, k], ignore_index=-1)
                    for k, t in enumerate(tasks)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only in fit)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(
        None,
        [
            f"model.backbone={args.backbone}",
            f"model.input_size={args.size}",
            f"optim.batch_size={args.batch}",
            f"runtime.device={args.device}",
            f"runtime.amp={'true' if args.amp else 'false'}",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        rows = select_rows(_rows(folder, args.n, args.size), ["train"])
        best_ours = best_full = best_min = float("inf")
        for r in range(args.repeats):
            train_s, full_s = ours(cfg, rows, folder, device, Path(tmp) / f"run{r}")
            best_ours, best_full = min(best_ours, train_s), min(best_full, full_s)
            best_min = min(best_min, minimal(cfg, rows, folder, device, args.amp))
    steps = math.ceil(len(rows) / args.batch)
    print(
        f"P5 fine-tune epoch: {len(rows)} images at {args.size} px, {args.backbone}, batch "
        f"{args.batch}, {steps} steps, device {args.device}, amp {args.amp}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"  our loop, training part : {best_ours:.3f} s")
    print(f"  our loop, incl. checkpoint: {best_full:.3f} s")
    print(f"  minimal hand-written loop: {best_min:.3f} s")
    print(f"  ratio (training part)    : {best_ours / best_min:.3f}  (goal <= 1.10)")
    print(f"  ratio (incl. checkpoint) : {best_full / best_min:.3f}")


if __name__ == "__main__":
    main()
