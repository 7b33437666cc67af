"""CPU inference: fp32 vs channels_last vs bf16 autocast for the SALL student (one run, ratios).

Measures the forward pass of ``sall_student`` on pre-built tensors, inside ``inference_mode``,
for resnet18@224 (batch 8) and resnet50@512 (batch 4), and prints each variant's speed-up over
plain fp32. The Predictor's ``cpu_fast="auto"`` default follows these numbers.

    .venv/bin/python benchmarks/bench_cpu_precision.py [--repeats 5] [--threads 1 --cpu-time]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time

import torch

from model_zoo.registry import get_model

# Wall time by default. On a CPU shared with other jobs, --threads 1 --cpu-time measures the
# compute itself (the calling thread's CPU time), which other processes' load barely disturbs.
CLOCK = time.perf_counter
VARIANTS = ((False, False), (True, False), (False, True), (True, True))


def _prepare(model, x, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return copy.deepcopy(model).to(memory_format=fmt), x.contiguous(memory_format=fmt)


def _run(model, x, bf16):
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    t0 = CLOCK()
    with torch.inference_mode(), ctx:
        model(x)
    return CLOCK() - t0


def _measure(model, x, repeats):
    """Best time per variant; variants interleaved so machine load hits them alike."""
    prepared = [_prepare(model, x, cl) + (bf,) for cl, bf in VARIANTS]
    for m, xx, bf in prepared:
        _run(m, xx, bf)  # warm-up: oneDNN primitive and weight-reorder caches
    best = [float("inf")] * len(VARIANTS)
    for _ in range(repeats):
        for i, (m, xx, bf) in enumerate(prepared):
            best[i] = min(best[i], _run(m, xx, bf))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--cpu-time", action="store_true", help="thread CPU time, needs 1 thread")
    args = parser.parse_args()
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        if torch.get_num_threads() != 1:
            parser.error("--cpu-time needs --threads 1")
        CLOCK = time.thread_time
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, "
        f"amx {torch.cpu._is_amx_tile_supported()}"
    )
    for backbone, size, batch in (("resnet18", 224, 8), ("resnet50", 512, 4)):
        model = get_model("sall_student", backbone=backbone).eval()
        x = torch.randn(batch, 3, size, size)
        times = _measure(model, x, args.repeats)
        base = times[0]
        print(f"{backbone}@{size} batch {batch}: fp32 {base * 1e3 / batch:.1f} ms/image")
        for (cl, bf), t in zip(VARIANTS[1:], times[1:], strict=True):
            label = "+".join(n for n, on in (("channels_last", cl), ("bf16", bf)) if on)
            print(f"  {label:<20} {t * 1e3 / batch:7.1f} ms/image  speed-up x{base / t:.2f}")


if __name__ == "__main__":
    main()
