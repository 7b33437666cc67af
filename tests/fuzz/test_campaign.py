"""The mutation campaign harness (``tests/fuzz/campaign.py``, ``make fuzz``): a quick run in the
suite, the 100,000-input run in ``make test-long``, and the harness's own counting of crashes,
hangs, blow-ups and exceptions (each injected into its worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.campaign import Tally, make_input, run_campaign
from tests.fuzz.hostile import seed_files

REPO = Path(__file__).resolve().parents[2]


def _clean(tally: Tally, inputs: int) -> None:
    assert tally.inputs == inputs
    assert tally.failures == 0, tally.format(0, 1)
    assert tally.stderr_lines == []  # decoders' warnings stay off stderr
    assert tally.decoded > 0 and sum(tally.reasons.values()) > 0


def test_inputs_are_a_function_of_seed_and_index() -> None:
    seeds = seed_files()
    assert make_input(seeds, 7, 123) == make_input(seed_files(), 7, 123)
    assert make_input(seeds, 7, 123) != make_input(seeds, 7, 124)


def test_a_quick_campaign_finds_nothing() -> None:
    _clean(run_campaign(300, seed=1, workers=2, timeout=120), 300)


@pytest.mark.parametrize(
    ("fault", "field"),
    [("crash", "crashes"), ("hang", "hangs"), ("blowup", "blowups"), ("exception", "exceptions")],
)
def test_the_harness_counts_what_a_decoder_does_wrong(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str, field: str
) -> None:
    monkeypatch.setenv("SALL_FUZZ_FAULT", fault)
    monkeypatch.setenv("SALL_FUZZ_BLOWUP_MB", "96")
    # A hang never answers, so a short limit decides nothing about speed.
    timeout = 2 if fault == "hang" else 120
    tally = run_campaign(1, seed=1, workers=1, timeout=timeout, rss_cap_mb=64, save=tmp_path)
    assert tally.inputs == 1 and len(getattr(tally, field)) == 1 and tally.failures == 1
    if fault == "crash":
        assert "SIGSEGV" in tally.crashes[0][1]
    kept = [p.name for p in tmp_path.iterdir()]
    assert len(kept) == 1 and kept[0].startswith(fault)


def test_make_fuzz_prints_its_counts() -> None:
    done = subprocess.run(
        [sys.executable, "tests/fuzz/campaign.py", "--inputs", "40", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "SALL_FUZZ_FAULT"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for count in ("inputs 40 ", "LoadErrors", "other exceptions 0", "crashes 0", "hangs 0"):
        assert count in done.stdout
    assert "blow-ups 0" in done.stdout


@pytest.mark.long
@pytest.mark.timeout(3 * 3600)
def test_the_long_campaign_finds_nothing() -> None:
    _clean(run_campaign(100_000, seed=22, workers=os.cpu_count() or 2, timeout=60), 100_000)
