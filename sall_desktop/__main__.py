"""Entry point: ``sall-desktop`` opens the workstation; sub-commands run the same services headless.

Sub-commands: ``scan``, ``import``, ``export``, ``grade``, ``inspect`` (and ``gui``, the default).
Imports are deferred into each command so that starting the window never pays for the others.
"""

from __future__ import annotations

import multiprocessing
import os

# OpenCV reads this once, when cv2 is first imported: refuse decompression bombs (R15).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FORMATS = ("canonical", "eyepacs", "aptos", "idrid", "messidor2", "imagefolder", "manifest")


def _db_path(args: argparse.Namespace) -> Path:
    from sall_desktop.services.paths import default_db_path

    return Path(args.db) if args.db else default_db_path()


def _progress(label: str) -> Callable[[int], None]:
    def report(done: int) -> None:
        if sys.stderr is not None and done % 50 == 0:
            print(f"\r{label}: {done}", end="", file=sys.stderr, flush=True)

    return report


def cmd_scan(args: argparse.Namespace) -> int:
    from sall_desktop.services.database import writable_store
    from sall_desktop.services.folder_scan import register_images, scan_folder

    summary = scan_folder(args.folder, on_progress=_progress("described"))
    print(file=sys.stderr)
    with writable_store(_db_path(args)) as store:
        register_images(store, summary.records)
    print(summary.format())
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from sall_desktop.services.catalogue import LoadError, inspect_file

    try:
        meta = inspect_file(Path(args.file))
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(asdict(meta), indent=2, sort_keys=True))
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from sall_desktop.services.database import writable_store
    from sall_desktop.services.folder_scan import register_images, scan_folder
    from sall_desktop.services.labels_io import import_labels

    if bool(args.as_grader) == bool(args.as_reference):
        print("error: give exactly one of --as-grader NAME or --as-reference NAME", file=sys.stderr)
        return EXIT_USAGE
    summary = scan_folder(args.folder, on_progress=_progress("described"))
    print(file=sys.stderr)
    with writable_store(_db_path(args)) as store:
        register_images(store, summary.records)
        report = import_labels(
            store,
            Path(args.file),
            args.format,
            summary.records,
            as_grader=args.as_grader,
            as_reference=args.as_reference,
            replace=args.replace,
        )
    print(report.format_report())
    if args.report:
        report.write_csv(Path(args.report))
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_export(args: argparse.Namespace) -> int:
    from sall_desktop.services.database import readable_store
    from sall_desktop.services.labels_io import export_labels

    with readable_store(_db_path(args)) as store:
        summary = export_labels(
            store,
            args.format,
            Path(args.out),
            grader=args.grader,
            identified=args.identified,
            include_notes=args.include_notes,
            accept_lossy=args.accept_lossy,
            task=args.task,
        )
    print(summary.format())
    return EXIT_OK


def cmd_grade(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from sall_desktop.services.batch_grading import (
        MODEL_LOAD_ERRORS,
        GradingProgress,
        grade_paths,
    )
    from sall_desktop.services.database import writable_store
    from sall_desktop.services.folder_scan import register_images, scan_folder
    from sall_desktop.services.inference import load_predictor

    try:
        predictor = load_predictor(Path(args.model), device=args.device)
    except MODEL_LOAD_ERRORS as exc:
        print(f"error: the model could not be loaded: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"model {predictor.card.name} ({predictor.card.id[:12]}) on {predictor.device_note}")
    summary = scan_folder(args.folder, on_progress=_progress("described"))
    cancel = threading.Event()

    def stop(signum: int, frame: object) -> None:
        # First Ctrl+C: finish the batch in flight and commit it; a second one aborts.
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nstopping after the current batch (Ctrl+C again to abort)", file=sys.stderr)

    started = time.perf_counter()

    def progress(p: GradingProgress) -> None:
        if sys.stderr is None or not p.total:
            return
        width = 30
        filled = width * p.done // p.total
        rate = p.done / max(time.perf_counter() - started, 1e-9)
        bar = "#" * filled + "-" * (width - filled)
        line = f"\r[{bar}] {p.done}/{p.total} ({p.failed} unreadable) {rate:.1f} img/s"
        print(line, end="", file=sys.stderr, flush=True)

    with writable_store(_db_path(args)) as store:
        register_images(store, summary.records)
        previous = signal.signal(signal.SIGINT, stop)
        try:
            result = grade_paths(
                store,
                predictor,
                [Path(r.path) for r in summary.records],
                known_sha256={r.path: r.sha256 for r in summary.records},
                batch_size=args.batch_size,
                cancel=cancel,
                on_progress=progress,
                csv_out=Path(args.out) if args.out else None,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
    print(file=sys.stderr)
    print(summary.format())
    print(result.format())
    return EXIT_OK if not result.cancelled else 130


def cmd_gui(args: argparse.Namespace) -> int:
    if sys.platform == "win32":
        # pytorch/pytorch#169429 (open): on Windows, torch >= 2.9 fails to initialise its DLLs
        # (WinError 1114) when imported after Qt's. The one sanctioned torch import in the app
        # (import-linter ignore_imports); untested here, re-check on every torch upgrade.
        import torch  # noqa: F401
    try:
        from sall_desktop.app import run_gui
    except ImportError as exc:
        print(f"the graphical workstation is not available in this build: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return run_gui(db=args.db, folder=args.folder)


def cmd_self_test(args: argparse.Namespace) -> int:
    from sall_desktop.services.self_test import run_self_test

    report = run_self_test(Path(args.model) if args.model else None)
    print(report.format())
    return EXIT_OK if report.ok else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sall-desktop", description="Grading workstation for retinal fundus photographs."
    )
    parser.add_argument("--db", help="label database (default: the user's data folder)")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="load the bundled model, decode, grade and explain one generated image, "
        "open a scratch database, then exit (0 = healthy)",
    )
    parser.add_argument("--model", help="with --self-test: check this model instead")
    sub = parser.add_subparsers(dest="command")

    gui = sub.add_parser("gui", help="open the workstation (default)")
    gui.add_argument("folder", nargs="?", help="folder to open")
    gui.set_defaults(func=cmd_gui)

    scan = sub.add_parser("scan", help="register a folder's images in the database")
    scan.add_argument("folder")
    scan.set_defaults(func=cmd_scan)

    imp = sub.add_parser("import", help="import labels from a CSV file")
    imp.add_argument("file")
    imp.add_argument("--format", required=True, choices=FORMATS)
    imp.add_argument("--folder", required=True, help="folder holding the labelled images")
    imp.add_argument("--as-grader", help="record the labels as this named grader's grades")
    imp.add_argument("--as-reference", help="record the labels as reference labels of this source")
    imp.add_argument("--replace", action="store_true", help="replace this grader's existing grades")
    imp.add_argument("--report", help="write the conflict report to this CSV file")
    imp.set_defaults(func=cmd_import)

    exp = sub.add_parser("export", help="export current labels")
    exp.add_argument("--format", required=True, choices=FORMATS)
    exp.add_argument("--out", required=True)
    exp.add_argument("--grader", help="export this grader's grades (default: latest human grade)")
    exp.add_argument(
        "--identified",
        action="store_true",
        help="keep file names, hashes and patient ids (default: keyed pseudonyms, R19)",
    )
    exp.add_argument("--include-notes", action="store_true", help="export free-text notes")
    exp.add_argument(
        "--accept-lossy", action="store_true", help="accept the documented lossy scale mappings"
    )
    exp.add_argument("--task", default="dr", choices=("dr", "amd"), help="imagefolder: which task")
    exp.set_defaults(func=cmd_export)

    grade = sub.add_parser("grade", help="grade a folder with a model version (predictions)")
    grade.add_argument("folder")
    grade.add_argument("--model", required=True, help="model folder or its card.json")
    grade.add_argument("--out", help="also write this run's predictions to a CSV file")
    grade.add_argument("--batch-size", type=int, default=8)
    grade.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    grade.set_defaults(func=cmd_grade)

    ins = sub.add_parser("inspect", help="print an image's metadata as JSON")
    ins.add_argument("file")
    ins.set_defaults(func=cmd_inspect)
    for p in (gui, scan, imp, exp, grade, ins):
        p.add_argument("--db", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()
    args = build_parser().parse_args(argv)
    if args.self_test:
        return cmd_self_test(args)
    if args.command is None:
        args = build_parser().parse_args(["gui", *(argv or sys.argv[1:])])
    from sall_desktop.services.database import ReadOnlyDatabaseError

    try:
        result: int = args.func(args)
    except ReadOnlyDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return result


if __name__ == "__main__":
    sys.exit(main())
