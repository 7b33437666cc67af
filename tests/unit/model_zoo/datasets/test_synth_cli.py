"""training.synth: the `sall-train synth` subcommand, run directly with a Namespace."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
from pathlib import Path

import pytest

from training.protocol.canonical import parse_canonical
from training.protocol.manifest import parse_manifest
from training.synth import GROUND_TRUTH_COLUMNS, add_parser, run


def _args(out: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "out": out,
        "n": 12,
        "seed": 5,
        "size": 64,
        "dicom_fraction": 0.2,
        "jpeg_quality": 90,
        "workers": 1,
    }
    return argparse.Namespace(**(values | overrides))


def test_writes_images_and_csvs_that_parse_back(tmp_path: Path) -> None:
    assert run(_args(tmp_path)) == 0
    manifest = parse_manifest((tmp_path / "manifest.csv").read_text(encoding="utf-8"))
    labels = parse_canonical((tmp_path / "labels.csv").read_text(encoding="utf-8"))
    truth = list(csv.DictReader(io.StringIO((tmp_path / "ground_truth.csv").read_text())))
    assert len(manifest) == len(labels) == len(truth) == 12
    assert tuple(truth[0]) == GROUND_TRUTH_COLUMNS
    for m, lab, t in zip(manifest, labels, truth, strict=True):
        assert hashlib.sha256((tmp_path / m.image_path).read_bytes()).hexdigest() == m.sha256
        assert lab.sha256 == m.sha256 == t["sha256"]
        assert (lab.dr_icdr, lab.amd_grade, lab.gradable) == (m.dr_grade, m.amd_grade, m.gradable)
        assert lab.laterality == m.laterality and lab.patient_id == m.patient_id
        assert lab.laterality_source == (
            "dicom_tag" if m.image_path.endswith(".dcm") else "filename_rule"
        )
        assert m.split == t["split"]
        if m.dr_grade is not None:
            assert str(m.dr_grade) == t["true_dr_grade"]
    assert any(m.image_path.endswith(".dcm") for m in manifest)


def test_parser_registers_synth_with_run_as_handler(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    ns = parser.parse_args(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--n",
            "4",
            "--seed",
            "1",
            "--size",
            "300x200",
            "--dicom-fraction",
            "0",
        ]
    )
    assert ns.func is run and ns.size == (300, 200) and ns.dicom_fraction == 0.0
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["synth", "--out", str(tmp_path), "--n", "4", "--seed", "1", "--size", "big"]
        )


def test_bad_arguments_give_a_message_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(tmp_path / "out", n=0)) == 2
    assert "n must be" in capsys.readouterr().err
    assert run(_args(tmp_path / "out", size=10)) == 2
    assert "size" in capsys.readouterr().err
