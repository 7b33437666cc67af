"""Compute device choice: CUDA, then Apple MPS, then CPU, with a note the user can read."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's largest fixed mmap threshold: activations below it are reused from the heap."""
TRIM_THRESHOLD = 2**31 - 1
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep glibc from mapping and unmapping every large tensor (once per process; Linux).

    With glibc's defaults each large activation of a CPU forward pass is a fresh ``mmap`` whose
    pages fault in again, and freed memory is trimmed back to the system after every batch, which
    slows a heavy model's CPU forward pass noticeably (see docs/benchmarks.md, "Figures formerly in
    docstrings"). The price is that memory freed after a batch stays with the process for reuse. A
    user's own ``GLIBC_TUNABLES`` (``make`` sets them) wins.

    Returns:
        True when the settings were applied by this call.
    """
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return False
    _allocator_tuned = True
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False  # not glibc (musl): nothing to tune
    mallopt = libc.mallopt
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _cuda_usable(index: int) -> str | None:
    """None when CUDA device ``index`` works, else why not (drivers can be present but broken)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    if index >= torch.cuda.device_count():
        return f"there is no CUDA device {index} ({torch.cuda.device_count()} found)"
    try:
        torch.zeros(1, device=f"cuda:{index}").add_(1)
    except RuntimeError as exc:
        return f"the CUDA GPU failed to start ({str(exc).splitlines()[0]})"
    return None


def _mps_usable() -> str | None:
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return "no Apple GPU (MPS) is available"
    try:
        torch.zeros(1, device="mps").add_(1)
    except RuntimeError as exc:
        return f"the Apple GPU failed to start ({str(exc).splitlines()[0]})"
    return None


def select_device(prefer: str | None = None) -> tuple[torch.device, str]:
    """Pick the device to run models on.

    Args:
        prefer: ``None`` or ``"auto"`` (CUDA -> MPS -> CPU), ``"cuda"``, ``"cuda:N"``, ``"mps"``
            or ``"cpu"``. A requested accelerator that is missing or broken falls back to the CPU.

    Returns:
        ``(device, note)``; the note is for the status bar, e.g. ``"GPU: NVIDIA H100"``,
        ``"Apple GPU (MPS)"`` or ``"CPU — slower (no CUDA GPU is available)"``.

    Raises:
        ValueError: ``prefer`` is not one of the forms above.

    Example:
        >>> device, note = select_device()
    """
    choice = (prefer or "auto").strip().lower()
    reasons: list[str] = []
    if choice in ("auto", "cuda") or choice.startswith("cuda:"):
        try:
            index = int(choice.split(":", 1)[1]) if ":" in choice else 0
        except ValueError:
            raise ValueError(f"unknown device {prefer!r}") from None
        problem = _cuda_usable(index)
        if problem is None:
            return torch.device("cuda", index), f"GPU: {torch.cuda.get_device_name(index)}"
        reasons.append(problem)
    if choice in ("auto", "mps"):
        problem = _mps_usable()
        if problem is None:
            return torch.device("mps"), "Apple GPU (MPS)"
        if choice == "mps":
            reasons.append(problem)
    if choice not in ("auto", "cpu", "mps", "cuda") and not choice.startswith("cuda:"):
        raise ValueError(f"unknown device {prefer!r}; use auto, cuda, cuda:N, mps or cpu")
    tune_cpu_allocator()
    if choice == "cpu":
        return torch.device("cpu"), "CPU (as requested)"
    return torch.device("cpu"), f"CPU — slower ({'; '.join(reasons)})"
