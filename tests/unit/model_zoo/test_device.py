"""Device choice: CUDA -> MPS -> CPU, with a note and a fallback for broken accelerators."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from model_zoo.device import select_device


def _no_accelerators(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_cpu_when_nothing_else_exists(monkeypatch) -> None:
    _no_accelerators(monkeypatch)
    device, note = select_device()
    assert device == torch.device("cpu")
    assert note == "CPU — slower (no CUDA GPU is available)"


def test_requested_accelerator_that_is_missing_falls_back_with_a_reason(monkeypatch) -> None:
    _no_accelerators(monkeypatch)
    for prefer in ("cuda", "cuda:1", "mps"):
        device, note = select_device(prefer)
        assert device.type == "cpu" and note.startswith("CPU — slower (")


def test_explicit_cpu() -> None:
    assert select_device("cpu") == (torch.device("cpu"), "CPU (as requested)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a working GPU")
def test_a_gpu_that_fails_to_start_falls_back_to_cpu(monkeypatch) -> None:
    # A CUDA build of torch with a broken/missing driver: reported available, fails on use.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    device, note = select_device()
    assert device.type == "cpu"
    assert "failed to start" in note


def test_mps_is_chosen_after_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("model_zoo.device._mps_usable", lambda: None)
    assert select_device() == (torch.device("mps"), "Apple GPU (MPS)")


@pytest.mark.parametrize("prefer", ["tpu", "cuda:x", "gpu"])
def test_unknown_device_names_raise(prefer: str) -> None:
    with pytest.raises(ValueError, match="device"):
        select_device(prefer)


_PROBE = """
import ctypes, sys
from model_zoo.device import select_device, tune_cpu_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mapped_while_alive(size):
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    during = libc.mallinfo2().hblkhd
    libc.free(block)
    return during - before

size = 16 * 1024 * 1024
untuned = mapped_while_alive(size)
select_device("cpu")
print(untuned >= size, mapped_while_alive(size) == 0, tune_cpu_allocator())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator")
def test_cpu_choice_keeps_large_tensors_off_fresh_mmaps() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    # Before: a 16 MB block is its own mmap; after choosing the CPU it comes from the heap.
    # A second call does nothing (once per process).
    assert out == ["True", "True", "False"]
    env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=4294967296"
    user = subprocess.run(
        [sys.executable, "-c", _PROBE.replace('select_device("cpu")', "")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert user[2] == "False"  # the user's own tunables win: nothing applied
