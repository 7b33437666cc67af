"""Time and memory of ``read_image`` on each of issue 22's bombs, one fresh process per file.

Builds every bomb of ``tests/fuzz/hostile.py`` (PNG/TIFF of 10,000² RGBA 16-bit zeros, RLE and
JPEG 2000 DICOMs of 10,000² 16-bit zeros, a DICOM of 96 MB of empty elements, a deflated DICOM
of 4 million elements, 64 MB JPEGs of COM segments, fill bytes and restart markers) in a
temporary folder and reads each with default limits in its own ``python`` process, which prints:

* ``s``: wall seconds of the ``read_image`` call;
* ``peak MB``: the process's peak RSS (VmHWM) minus its RSS before the call, imports excluded;
* ``max RSS MB``: the process's whole peak RSS (VmHWM before the reset and after the call),
  imports included (``ru_maxrss`` would not do: Linux carries the parent's over ``fork``);
* the outcome: the ``LoadError`` reason and message, or the decoded size.

Then the large legitimate image of ``LEGIT`` (a 10,000² 16-bit RGB PNG, about 200 MB), which
must decode. A file still running after ``--timeout`` seconds is stopped and shown as such.
``--repo DIR`` measures another checkout's ``model_zoo`` (say ``git archive <commit> model_zoo | tar
-x -C DIR``), for before/after figures; the bombs are built by this checkout either way.

Usage: ``.venv/bin/python benchmarks/bench_bombs.py [--only NAME ...] [--timeout S] [--repo DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fuzz.hostile import BOMBS, LEGIT  # noqa: E402

_MEASURE = """
import json, sys, time
from model_zoo.io import LoadError, read_image

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))

imports = status("VmHWM")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset VmHWM to the current RSS: the imports' peak is not the file's
base = status("VmRSS")
start = time.perf_counter()
try:
    image = read_image(sys.argv[1])
    outcome = "decoded %dx%d" % image.rgb.shape[:2]
except LoadError as error:
    outcome = f"LoadError {error.reason}: {error}"
seconds = time.perf_counter() - start
peak = (status("VmHWM") - base) / 1024
maximum = max(imports, status("VmHWM")) / 1024
print(json.dumps({"s": seconds, "peak_mb": peak, "max_rss_mb": maximum, "outcome": outcome}))
"""


def measure(path: Path, timeout: float, repo: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    try:
        run = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=repo,  # ``python -c`` puts the working folder first on sys.path
        )
    except subprocess.TimeoutExpired:
        return {"outcome": f"still running after {timeout:.0f} s (stopped)"}
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        return {"outcome": f"process ended with {run.returncode}: {run.stderr.strip()[-300:]}"}
    result: dict[str, object] = json.loads(lines[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BOMBS | LEGIT), help="these files only")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--repo", type=Path, default=REPO, help="whose model_zoo to measure")
    args = parser.parse_args(argv)
    files = BOMBS | LEGIT
    names = args.only or list(files)
    print(f"{'bomb':<26}{'file MB':>9}{'s':>8}{'peak MB':>9}{'max RSS MB':>12}  outcome")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            suffix, build = files[name]
            path = build(Path(folder) / f"{name}{suffix}")
            size = path.stat().st_size / 1e6
            result = measure(path, args.timeout, args.repo.resolve())
            path.unlink()
            figures = (
                f"{result['s']:>8.2f}{result['peak_mb']:>9.0f}{result['max_rss_mb']:>12.0f}"
                if "s" in result
                else f"{'-':>8}{'-':>9}{'-':>12}"
            )
            print(f"{name:<26}{size:>9.2f}{figures}  {str(result['outcome'])[:150]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
