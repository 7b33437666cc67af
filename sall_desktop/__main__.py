"""Entry point: ``sall-desktop`` opens the workstation; sub-commands run the same services headless.

Sub-commands: ``scan``, ``import``, ``export``, ``grade``, ``inspect``, the screening programme's
``programme``, ``testset`` and ``report graders``, ``verify``, ``backups`` and ``restore``, and
``migrate-store`` for a team store (and ``gui``, the default). ``--db`` is a SQLite file or a
team store's ``postgresql://`` address.
Imports are deferred into each command so that starting the window never pays for the others.
Anticipated failures (a missing, damaged or busy database, a missing folder or file, an output
that cannot be written, a model that cannot be loaded) are one line on stderr and exit 1; usage
errors exit 2; only a bug ends in a traceback.
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
from typing import Protocol  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "sall-desktop"
FORMATS = ("canonical", "eyepacs", "aptos", "idrid", "messidor2", "imagefolder", "manifest")
PREDICTIONS_HINT = (
    "model predictions are exported by `sall-desktop grade FOLDER --model M --out predictions.csv`"
)


class CommandError(Exception):
    """An anticipated failure of a command: ``str(err)`` is the one line shown; exit 1."""


class UsageError(CommandError):
    """Options that do not go together (argparse cannot tell); exit 2 like argparse's errors."""


class _StatusLine:
    """The one stderr line that progress rewrites in place (``\\r``); :meth:`end` closes it."""

    def __init__(self) -> None:
        self.open = False

    def show(self, text: str) -> None:
        if sys.stderr is not None:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
            self.open = True

    def counter(self, label: str) -> Callable[[int], None]:
        def report(done: int) -> None:
            if done % 50 == 0:
                self.show(f"{label}: {done}")

        return report

    def end(self) -> None:
        if self.open and sys.stderr is not None:
            print(file=sys.stderr)
        self.open = False


_status = _StatusLine()


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print ``message`` as one line on stderr (after any progress line) and return ``code``."""
    _status.end()
    print(f"{PROG}: {' '.join(message.splitlines())}", file=sys.stderr)
    return code


def _db_path(args: argparse.Namespace) -> Path | str:
    """``--db``: a team store's ``postgresql://`` address as given, else the SQLite file."""
    from sall_desktop.services.database import store_target

    return store_target(args.db)


def _db_file(db: Path | str) -> Path | None:
    return db if isinstance(db, Path) else None  # a team store has no file to protect


def _input_file(value: str, what: str) -> Path:
    """``value`` as a path, once it is a readable file."""
    path = Path(value)
    if path.is_dir():
        raise CommandError(f"{path} is a folder, not a {what}")
    if not path.exists():
        raise CommandError(f"there is no {what} {path}")
    if not os.access(path, os.R_OK):
        raise CommandError(f"cannot read the {what} {path} (permission denied)")
    return path


def _output(value: str, db: Path | str | None, *, folder: bool = False) -> Path:
    """``value`` as a path that can be written: its folder exists and is writable, and it is
    neither the database ``db`` (nor one of its files) nor in the app's data folder.

    Checked before the database is opened, so a refused target costs no scan. The folder is
    never created: a mistyped ``--out`` is reported, not silently made.
    """
    from sall_desktop.services.paths import refuse_protected_target

    path = Path(value)
    refuse_protected_target(path, db=db if isinstance(db, Path) else None)
    parent = path.absolute().parent
    if path.is_dir() and not folder:
        raise CommandError(f"cannot write {path}: it is a folder")
    if not parent.is_dir():
        raise CommandError(f"cannot write {path}: there is no folder {parent}")
    if not os.access(parent, os.W_OK):
        raise CommandError(f"cannot write {path}: the folder {parent} is read-only")
    return path


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def cmd_scan(args: argparse.Namespace) -> int:
    from sall_desktop.services.database import writable_store
    from sall_desktop.services.folder_scan import check_folder, register_images, scan_folder

    folder = check_folder(args.folder)
    with writable_store(_db_path(args)) as store:
        summary = scan_folder(folder, on_progress=_status.counter("described"))
        _status.end()
        register_images(store, summary.records)
    print(summary.format())
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from sall_desktop.services.catalogue import LoadError, inspect_file

    try:
        meta = inspect_file(Path(args.file))
    except LoadError as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps(asdict(meta), indent=2, sort_keys=True))
    return EXIT_OK


def _import_name(args: argparse.Namespace) -> None:
    if bool(args.as_grader) == bool(args.as_reference):
        raise UsageError("give exactly one of --as-grader NAME or --as-reference NAME")
    if args.as_grader is not None and not args.as_grader.strip():
        raise UsageError("--as-grader needs a name")
    if (
        args.as_reference is not None
        and not args.as_reference.strip().removeprefix("reference:").strip()
    ):
        raise UsageError("--as-reference needs a source name, for example eyepacs")


def cmd_import(args: argparse.Namespace) -> int:
    from sall_desktop.services.database import writable_store
    from sall_desktop.services.folder_scan import check_folder, register_images, scan_folder
    from sall_desktop.services.labels_io import import_labels

    _import_name(args)
    labels = _input_file(args.file, "label file")
    folder = check_folder(args.folder)
    db = _db_path(args)
    report_path = _output(args.report, db) if args.report else None
    with writable_store(db) as store:
        summary = scan_folder(folder, on_progress=_status.counter("described"))
        _status.end()
        register_images(store, summary.records)
        report = import_labels(
            store,
            labels,
            args.format,
            summary.records,
            as_grader=args.as_grader,
            as_reference=args.as_reference,
            replace=args.replace,
        )
    print(report.format_report())
    if report_path is not None:
        report.write_csv(report_path, db=_db_file(db))
    return EXIT_OK if report.ok else EXIT_FAILED


def _missing_hint(rows: int, missing: int, grader: str | None, references: Sequence[str]) -> str:
    """Why an export wrote fewer rows than the database has images, and what to run instead."""
    written = f"{rows} row{'' if rows == 1 else 's'} written"
    images = f"{missing} image{' has' if missing == 1 else 's have'}"
    if grader is not None:
        return f"{written}: {images} no grade by {grader}"
    pointers = [PREDICTIONS_HINT]
    if references:
        pointers.append(f"imported reference labels are exported with --grader {references[0]}")
    return f"{written}: {images} no human grade ({'; '.join(pointers)})"


class _Checkable(Protocol):
    """What :func:`_refuse_unchecked_damage` needs of the store (the CLI imports no store)."""

    startup_check: str | None

    def integrity_check(self, *, quick: bool = False) -> str: ...


def _refuse_unchecked_damage(store: _Checkable, db: Path | str) -> None:
    """Check a database the store opened without checking it (a big one, after a clean exit).

    An export copies labels out to be trusted elsewhere: damage must stop it, not pass into
    the file with exit 0. The check reads every page once, as the export nearly does anyway.
    """
    if store.startup_check is None and store.integrity_check(quick=True) != "ok":
        raise CommandError(
            f"the label database {db} is damaged; nothing was exported (restore a backup: "
            "`sall-desktop backups` lists them, `sall-desktop restore --from BACKUP`)"
        )


def cmd_export(args: argparse.Namespace) -> int:
    from sall_desktop.services.adapters.export_rows import missing_gradings
    from sall_desktop.services.database import readable_store
    from sall_desktop.services.labels_io import ExportError, export_labels

    if args.include_notes and not args.identified:
        raise UsageError("--include-notes needs --identified (notes may hold patient details)")
    db = _db_path(args)
    out = _output(args.out, db, folder=args.format == "imagefolder")
    with readable_store(db) as store:
        _refuse_unchecked_damage(store, db)
        try:
            summary = export_labels(
                store,
                args.format,
                out,
                grader=args.grader,
                identified=args.identified,
                include_notes=args.include_notes,
                accept_lossy=args.accept_lossy,
                task=args.task,
                db=_db_file(db),
            )
        except ExportError as exc:
            cause = exc.__cause__
            why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(exc)
            raise CommandError(f"cannot write {out}: {why}; a previous file is unchanged") from exc
        missing, references = missing_gradings(store, args.grader)
        head = store.chain_head()
    print(summary.format())
    if missing:
        print(_missing_hint(summary.rows, missing, args.grader, references))
    # Kept outside the database, the head shows a later rewrite of the history (verify).
    print(f"audit chain head: {head or '(empty)'}")
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
    from sall_desktop.services.folder_scan import check_folder, register_images, scan_folder
    from sall_desktop.services.inference import load_predictor

    model = Path(args.model)
    if not model.exists():
        raise CommandError(f"there is no model at {model} (give a model folder or its card.json)")
    folder = check_folder(args.folder)
    db = _db_path(args)
    out = _output(args.out, db) if args.out else None
    cancel = threading.Event()

    def stop(signum: int, frame: object) -> None:
        # First Ctrl+C: finish the batch in flight and commit it; a second one aborts.
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        _status.end()
        print("stopping after the current batch (Ctrl+C again to abort)", file=sys.stderr)

    started = time.perf_counter()

    def progress(p: GradingProgress) -> None:
        if not p.total:
            return
        width = 30
        filled = width * p.done // p.total
        rate = p.done / max(time.perf_counter() - started, 1e-9)
        bar = "#" * filled + "-" * (width - filled)
        _status.show(f"[{bar}] {p.done}/{p.total} ({p.failed} unreadable) {rate:.1f} img/s")

    with writable_store(db) as store:  # first: a busy database fails at once
        try:
            predictor = load_predictor(model, device=args.device)
        except MODEL_LOAD_ERRORS as exc:
            raise CommandError(f"the model could not be loaded: {exc}") from exc
        name, model_id = predictor.card.name, predictor.card.id[:12]
        print(f"model {name} ({model_id}) on {predictor.device_note}", flush=True)
        summary = scan_folder(folder, on_progress=_status.counter("described"))
        _status.end()
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
                csv_out=out,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
    _status.end()
    print(summary.format())
    print(result.format())
    return EXIT_OK if not result.cancelled else EXIT_INTERRUPTED


def cmd_gui(args: argparse.Namespace) -> int:
    if sys.platform == "win32":
        # pytorch/pytorch#169429 (open): on Windows, torch >= 2.9 fails to initialise its DLLs
        # (WinError 1114) when imported after Qt's. The one sanctioned torch import in the app
        # (import-linter ignore_imports); untested here, re-check on every torch upgrade.
        import torch  # noqa: F401
    try:
        from sall_desktop.app import run_gui
    except ImportError as exc:
        return _fail(f"the graphical workstation is not available in this build: {exc}")
    return run_gui(db=args.db, folder=args.folder)


def cmd_self_test(args: argparse.Namespace) -> int:
    from sall_desktop.services.self_test import run_self_test

    model = Path(args.model) if args.model else None
    if model is not None and not model.exists():
        raise CommandError(f"there is no model at {model} (give a model folder or its card.json)")
    report = run_self_test(model)
    print(report.format())
    return EXIT_OK if report.ok else EXIT_FAILED


def _failure_message(exc: Exception) -> str | None:
    """The one line for an anticipated failure, or None for a bug (its traceback is the report)."""
    from sall_desktop.services.adapters import LabelFileError
    from sall_desktop.services.adapters.privacy import PrivacyError
    from sall_desktop.services.database import DatabaseError
    from sall_desktop.services.folder_scan import FolderError
    from sall_desktop.services.paths import ProtectedTargetError

    if isinstance(
        exc, CommandError | DatabaseError | FolderError | LabelFileError | ProtectedTargetError
    ):
        return str(exc)
    if isinstance(exc, PrivacyError):
        return f"refused: {exc}"
    if isinstance(exc, OSError):  # the disk or the system refused: never a bug of ours
        reason = exc.strerror or str(exc)
        return f"{exc.filename}: {reason}" if exc.filename else reason
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Grading workstation for retinal fundus photographs."
    )
    parser.add_argument(
        "--db",
        help="label database file (default: in the user's data folder), or a team store's "
        "postgresql://USER@HOST/DBNAME address (password from ~/.pgpass or PGPASSWORD)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="load the bundled model, decode, grade and explain one generated image, "
        "open a scratch database, then exit (0 = healthy)",
    )
    parser.add_argument("--model", help="with --self-test: check this model folder instead")
    sub = parser.add_subparsers(dest="command")

    gui = sub.add_parser("gui", help="open the workstation (default)")
    gui.add_argument("folder", nargs="?", help="folder to open")
    gui.set_defaults(func=cmd_gui)

    scan = sub.add_parser("scan", help="register a folder's images in the database")
    scan.add_argument("folder", help="folder of fundus photographs (searched recursively)")
    scan.set_defaults(func=cmd_scan)

    imp = sub.add_parser("import", help="import labels from a CSV file")
    imp.add_argument("file", help="the label file (CSV)")
    imp.add_argument("--format", required=True, choices=FORMATS, help="the label file's format")
    imp.add_argument("--folder", required=True, help="folder holding the labelled images")
    imp.add_argument("--as-grader", help="record the labels as this named grader's grades")
    imp.add_argument("--as-reference", help="record the labels as reference labels of this source")
    imp.add_argument("--replace", action="store_true", help="replace this grader's imported grades")
    imp.add_argument("--report", help="write the conflict report to this CSV file")
    imp.set_defaults(func=cmd_import)

    exp = sub.add_parser(
        "export",
        help="export human grades (model predictions: grade --out)",
        description="Export each image's current human grade. Model predictions are not "
        "exported here: `sall-desktop grade FOLDER --model M --out predictions.csv` writes them.",
    )
    exp.add_argument("--format", required=True, choices=FORMATS, help="the file format to write")
    exp.add_argument("--out", required=True, help="file to write (a folder for imagefolder)")
    exp.add_argument("--grader", help="export this grader's grades (default: latest human grade)")
    exp.add_argument(
        "--identified",
        action="store_true",
        help="keep file names, hashes and patient ids (default: de-identified, with keyed "
        "pseudonyms instead of ids, no paths, year-only dates)",
    )
    exp.add_argument(
        "--include-notes", action="store_true", help="export free-text notes (needs --identified)"
    )
    exp.add_argument(
        "--accept-lossy", action="store_true", help="accept the documented lossy scale mappings"
    )
    exp.add_argument("--task", default="dr", choices=("dr", "amd"), help="imagefolder: which task")
    exp.set_defaults(func=cmd_export)

    grade = sub.add_parser("grade", help="grade a folder with a model version (predictions)")
    grade.add_argument("folder", help="folder of fundus photographs (searched recursively)")
    grade.add_argument("--model", required=True, help="model folder or its card.json")
    grade.add_argument("--out", help="also write this run's predictions to a CSV file")
    grade.add_argument(
        "--batch-size", type=_positive_int, default=8, help="images per batch (default: 8)"
    )
    grade.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    grade.set_defaults(func=cmd_grade)

    ins = sub.add_parser("inspect", help="print an image's metadata as JSON")
    ins.add_argument("file", help="the image file")
    ins.set_defaults(func=cmd_inspect)
    from sall_desktop.cli_programme import CliHelpers, add_parsers
    from sall_desktop.cli_store import add_parsers as add_store_parsers
    from sall_desktop.cli_team import add_parsers as add_team_parsers

    helpers = CliHelpers(_db_path, _output, CommandError)
    more = [
        *add_parsers(sub, helpers),
        *add_store_parsers(sub, helpers),
        *add_team_parsers(sub, helpers),
    ]
    for p in (gui, scan, imp, exp, grade, ins, *more):
        p.add_argument("--db", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; every anticipated failure is one stderr line and exit 1.

    Usage errors exit 2 (argparse's, and options that do not go together); an interrupted
    command exits 130. Anything else escapes with its traceback: that is a bug to report.
    """
    multiprocessing.freeze_support()
    args = build_parser().parse_args(argv)
    if args.self_test:
        args.func = cmd_self_test
    elif args.command is None:
        args = build_parser().parse_args(["gui", *(argv or sys.argv[1:])])
    func: Callable[[argparse.Namespace], int] = args.func
    if func is cmd_gui:  # the window reports its own failures
        return func(args)
    try:
        result = func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except Exception as exc:
        message = _failure_message(exc)
        if message is None:
            raise
        return _fail(message)
    return result


if __name__ == "__main__":
    sys.exit(main())
