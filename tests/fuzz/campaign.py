"""The mutation campaign of issue 22: mutated image and DICOM files through ``read_image``, each
in a worker process, so a segfault, a hang or a memory blow-up counts instead of ending the run.

Input ``i`` of seed ``s`` is a pure function of ``(s, i)``: one of :func:`hostile.seed_files`
(every codec and DICOM transfer syntax) with 1-4 mutations (byte overwrites, bit flips, large
integers written over 2/4-byte fields, insertions, deletions, a cut, a repeated run of bytes, one
byte of a DICOM VR changed), biased towards the header. ``make fuzz N=2000 SEED=1`` runs::

    .venv/bin/python tests/fuzz/campaign.py --inputs 2000 --seed 1

Each worker reads paths from its stdin, decodes each with default limits and writes one JSON
line: the outcome, the seconds taken and the growth of its peak RSS (``VmHWM`` reset before
each input). The parent counts:

* **LoadErrors** by reason, and files decoded: the expected outcomes;
* **other exceptions**: anything ``read_image`` raised that is not a ``LoadError`` (a bug);
* **crashes**: a worker killed by a signal (the input is replayed alone to confirm it);
* **hangs**: no answer within ``--timeout`` seconds (the worker is killed);
* **blow-ups**: peak RSS grew by more than ``--rss-cap`` MB, or the decode ran out of the
  worker's address space (``RLIMIT_AS``: the RSS cap plus headroom, so a bomb cannot take the
  machine down);
* **slow**: inputs over ``--slow`` seconds (reported, not a failure: a busy machine is slow);
* **stderr lines**: what decoders printed (libjpeg's warnings must not reach stderr).

Exit status 0 when there were no other exceptions, crashes, hangs or blow-ups. ``--save DIR``
keeps every such input (and the slow ones) for ``tests/fuzz/corpus/``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_VRS = re.compile(rb"(?:AE|AS|CS|DA|DS|IS|LO|OB|OW|PN|SH|SQ|UI|UL|UN|US|UT)")
_LIES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 10_000, 65535 * 4, 0x7FFFFFFF, 0xFFFFFFFF)
_OPS = ("set", "flip", "lie", "insert", "delete", "cut", "repeat", "vr")


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` with 1-4 random mutations, each placed at ``u**3`` of the length (header bias),
    after the format's magic bytes."""
    out = bytearray(data)
    magic = 132 if out[128:132] == b"DICM" else 4  # mutated magic only tests the allowlist
    for _ in range(int(rng.integers(1, 5))):
        op = _OPS[int(rng.integers(len(_OPS)))]
        at = min(magic + int(rng.random() ** 3 * max(len(out) - magic - 1, 0)), len(out))
        if op == "set":
            size = int(rng.integers(1, 5))
            out[at : at + size] = rng.bytes(size)
        elif op == "flip" and at < len(out):
            out[at] ^= 1 << int(rng.integers(8))
        elif op == "lie":
            value, width = _LIES[int(rng.integers(len(_LIES)))], 2 + 2 * int(rng.integers(2))
            order = "little" if rng.random() < 0.5 else "big"
            out[at : at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, order)
        elif op == "insert":
            out[at:at] = rng.bytes(int(rng.integers(1, 17)))
        elif op == "delete":
            del out[at : at + int(rng.integers(1, 17))]
        elif op == "cut":
            del out[max(at, 1) :]
        elif op == "repeat":
            piece = bytes(out[at : at + int(rng.integers(1, 65))])
            out[at:at] = piece * int(rng.integers(1, 257))
        elif op == "vr":
            places = [m.start() for m in _VRS.finditer(out, 132)]
            if places:
                where = places[int(rng.integers(len(places)))] + int(rng.integers(2))
                out[where] = 0 if rng.random() < 0.5 else int(rng.integers(256))
    return bytes(out)


def make_input(seeds: list[tuple[str, bytes]], seed: int, index: int) -> tuple[str, bytes, int]:
    """``(suffix, bytes, reduce)`` of input ``index`` of campaign ``seed``."""
    rng = np.random.default_rng([seed, index])
    suffix, data = seeds[int(rng.integers(len(seeds)))]
    reduce = (1, 2, 8)[int(rng.integers(3))]
    return suffix, mutate(data, rng), reduce


# ------------------------------------------------------------------------------ worker


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))


def worker(address_space_mb: int) -> None:
    """Decode the paths written to stdin, one JSON line per path on stdout."""
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from model_zoo.io import LoadError, read_image

    with open("/proc/self/statm", encoding="ascii") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + address_space_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    out = sys.stdout
    fault = os.environ.get("SALL_FUZZ_FAULT", "")  # the harness's own tests inject one
    for line in sys.stdin:
        path, reduce = line.rstrip("\n").rsplit(" ", 1)
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # VmHWM back to the current RSS: this input's peak alone
        base = _status("VmRSS")
        start = time.perf_counter()
        result: dict[str, object]
        try:
            _inject(fault)
            read_image(path, reduce=int(reduce))
            result = {"outcome": "decoded"}
        except LoadError as error:
            oom = "more memory to decode than is available" in str(error)
            result = {"outcome": "load_error", "reason": error.reason, "oom": oom}
        except Exception as error:  # noqa: BLE001 - exactly what the campaign looks for
            result = {"outcome": "exception", "type": type(error).__name__, "text": str(error)}
        result["s"] = time.perf_counter() - start
        result["growth_mb"] = (_status("VmHWM") - base) / 1024
        out.write(json.dumps(result) + "\n")
        out.flush()


def _inject(fault: str) -> None:
    """Misbehave as a decoder might: the harness's tests check each is counted."""
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        threading.Event().wait()
    elif fault == "blowup":
        np.ones(int(os.environ.get("SALL_FUZZ_BLOWUP_MB", "64")) << 20, np.uint8)
    elif fault == "exception":
        raise NotImplementedError("Unknown Value Representation 'U\\x00'")


# ------------------------------------------------------------------------------ parent


@dataclass
class Tally:
    """What a campaign found."""

    inputs: int = 0
    decoded: int = 0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    exceptions: list[tuple[int, str]] = field(default_factory=list)
    crashes: list[tuple[int, str]] = field(default_factory=list)
    hangs: list[int] = field(default_factory=list)
    blowups: list[tuple[int, float]] = field(default_factory=list)
    slow: list[tuple[int, float]] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    max_seconds: float = 0.0
    max_growth_mb: float = 0.0

    @property
    def failures(self) -> int:
        return len(self.exceptions) + len(self.crashes) + len(self.hangs) + len(self.blowups)

    def format(self, seconds: float, workers: int) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        rate = self.inputs / max(seconds, 1e-9)
        lines = [
            f"inputs {self.inputs} in {seconds:.0f} s ({rate:.0f}/s, {workers} workers)",
            f"decoded {self.decoded}",
            f"LoadErrors {sum(self.reasons.values())} ({reasons})",
            f"other exceptions {len(self.exceptions)}",
            f"crashes {len(self.crashes)}",
            f"hangs {len(self.hangs)}",
            f"blow-ups {len(self.blowups)}",
            f"slow {len(self.slow)}",
            f"stderr lines {len(self.stderr_lines)}",
            f"slowest input {self.max_seconds:.2f} s, "
            f"largest RSS growth {self.max_growth_mb:.0f} MB",
        ]
        lines += [f"  exception: input {i}: {text}" for i, text in self.exceptions[:20]]
        lines += [f"  crash: input {i}: {text}" for i, text in self.crashes[:20]]
        lines += [f"  hang: input {i}" for i in self.hangs[:20]]
        lines += [f"  blow-up: input {i}: {mb:.0f} MB" for i, mb in self.blowups[:20]]
        lines += [f"  slow: input {i}: {s:.1f} s" for i, s in self.slow[:20]]
        lines += [f"  stderr: {text}" for text in sorted(set(self.stderr_lines))[:10]]
        return "\n".join(lines)


class Worker:
    """One worker process and the line protocol to it."""

    def __init__(self, address_space_mb: int, stderr_lines: list[str], lock: threading.Lock):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--address-space-mb", str(address_space_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._buffer = b""
        self._stderr = threading.Thread(target=self._drain, args=(stderr_lines, lock), daemon=True)
        self._stderr.start()

    def _drain(self, sink: list[str], lock: threading.Lock) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with lock:
                sink.append(raw.decode("utf-8", "replace").rstrip())

    def ask(self, path: Path, reduce: int, timeout: float) -> dict[str, object] | str:
        """The worker's answer; ``"hang"`` or ``"crash: ..."`` when it gave none."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{path} {reduce}\n".encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            return self._died()
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                self.stop()
                return "hang"
            chunk = os.read(fd, 65536)
            if not chunk:
                return self._died()
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, object] = json.loads(line)
        return answer

    def _died(self) -> str:
        code = self.process.wait()
        name = signal.Signals(-code).name if code < 0 else f"exit {code}"
        return f"crash: {name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def run_campaign(
    inputs: int,
    seed: int,
    *,
    workers: int = 2,
    timeout: float = 10.0,
    rss_cap_mb: float = 1024.0,
    slow_s: float = 2.0,
    save: Path | None = None,
    start: int = 0,
) -> Tally:
    """Run inputs ``start .. start + inputs - 1`` of campaign ``seed``; the tally."""
    from tests.fuzz.hostile import seed_files

    seeds = seed_files()
    tally = Tally()
    lock = threading.Lock()
    counter = iter(range(start, start + inputs))
    address_space = int(rss_cap_mb * 4) + 2048  # the cap, with room for virtual reservations

    def record(index: int, suffix: str, data: bytes, answer: dict[str, object] | str) -> None:
        keep = ""
        with lock:
            tally.inputs += 1
            if isinstance(answer, str):
                if answer == "hang":
                    tally.hangs.append(index)
                    keep = "hang"
                else:
                    tally.crashes.append((index, answer))
                    keep = "crash"
            else:
                seconds, growth = float(answer["s"]), float(answer["growth_mb"])  # type: ignore[arg-type]
                tally.max_seconds = max(tally.max_seconds, seconds)
                tally.max_growth_mb = max(tally.max_growth_mb, growth)
                if answer["outcome"] == "decoded":
                    tally.decoded += 1
                elif answer["outcome"] == "load_error":
                    tally.reasons[str(answer["reason"])] += 1
                else:
                    tally.exceptions.append((index, f"{answer['type']}: {answer['text']}"[:200]))
                    keep = "exception"
                if growth > rss_cap_mb or answer.get("oom"):
                    tally.blowups.append((index, growth))
                    keep = "blowup"
                elif seconds > slow_s:
                    tally.slow.append((index, seconds))
                    keep = keep or "slow"
        if keep and save is not None:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"{keep}-s{seed}-{index}{suffix}").write_bytes(data)

    def drive(folder: Path) -> None:
        current = Worker(address_space, tally.stderr_lines, lock)
        try:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                suffix, data, reduce = make_input(seeds, seed, index)
                path = folder / f"input{suffix}"
                path.write_bytes(data)
                answer = current.ask(path, reduce, timeout)
                if isinstance(answer, str):
                    current.stop()
                    current = Worker(address_space, tally.stderr_lines, lock)
                    if answer != "hang":  # replay alone on a fresh worker: is it this input?
                        again = current.ask(path, reduce, timeout)
                        if not isinstance(again, str):
                            answer = again  # a neighbour's doing or a flake: count the replay
                        else:
                            current.stop()
                            current = Worker(address_space, tally.stderr_lines, lock)
                record(index, suffix, data, answer)
        finally:
            current.stop()

    errors: list[BaseException] = []

    def guarded(folder: Path) -> None:
        try:
            drive(folder)
        except BaseException as error:  # a harness bug must fail the run, not shrink it
            errors.append(error)

    with tempfile.TemporaryDirectory(prefix="sall-fuzz-") as folder:
        threads = []
        for n in range(workers):
            own = Path(folder) / str(n)
            own.mkdir()
            threads.append(threading.Thread(target=guarded, args=(own,), daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="first input index")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a hang")
    parser.add_argument("--rss-cap", type=float, default=1024.0, help="MB of RSS growth")
    parser.add_argument("--slow", type=float, default=2.0, help="seconds reported as slow")
    parser.add_argument("--save", type=Path, help="folder for failing and slow inputs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address-space-mb", type=int, default=6144, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.address_space_mb)
        return 0
    started = time.perf_counter()
    tally = run_campaign(
        args.inputs,
        args.seed,
        workers=args.workers,
        timeout=args.timeout,
        rss_cap_mb=args.rss_cap,
        slow_s=args.slow,
        save=args.save,
        start=args.start,
    )
    print(f"seed {args.seed}, inputs {args.start}..{args.start + args.inputs - 1}")
    print(tally.format(time.perf_counter() - started, args.workers))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
