"""Screening-programme sub-commands: ``programme``, ``testset`` and ``report graders``.

Registered by ``sall_desktop.__main__.build_parser``; the shared CLI helpers (where the database
is, which outputs are allowed, the one-line error type) are passed in, so this module never
imports the entry point (run as ``python -m``, that would be a second copy of it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CliHelpers:
    """What the programme commands borrow from the entry point."""

    db_path: Callable[[argparse.Namespace], Path | str]
    output: Callable[[str, Path | str], Path]
    error: type[Exception]


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {number}")
    return number


def _named(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("needs a name")
    return value


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], cli: CliHelpers
) -> list[argparse.ArgumentParser]:
    """Add the programme commands to ``sub``; return their parsers (for the shared options)."""
    prog = sub.add_parser("programme", help="set up double grading: rules, roles, status")
    psub = prog.add_subparsers(dest="programme_command", required=True)
    setup = psub.add_parser("setup", help="turn double grading on, or change its routing rules")
    setup.add_argument(
        "--normal-fraction",
        type=_fraction,
        default=0.10,
        help="share of normal images sent to second grading (default 0.10)",
    )
    setup.add_argument("--seed", type=int, default=0, help="seed of the normal sample")
    setup.add_argument(
        "--dr-step",
        type=int,
        default=2,
        help="ICDR difference that goes to arbitration (default 2)",
    )
    setup.add_argument("--amd-step", type=int, default=2, help="the same for AMD (0: off)")
    setup.add_argument("--by", required=True, type=_named, help="who changes the rules")
    setup.set_defaults(func=lambda a: _setup(a, cli))
    role = psub.add_parser("role", help="grant (or --revoke) a grader's role")
    role.add_argument("grader", type=_named)
    role.add_argument("role", choices=("primary", "secondary", "arbiter", "qa"))
    role.add_argument("--scope", default="", help="only for images under this folder")
    role.add_argument("--revoke", action="store_true", help="take the role away")
    role.add_argument("--by", required=True, type=_named, help="who assigns it")
    role.set_defaults(func=lambda a: _role(a, cli))
    status = psub.add_parser("status", help="rules, roles, queues and how final grades stand")
    status.set_defaults(func=lambda a: _status(a, cli))

    tests = sub.add_parser("testset", help="build and assign grader test sets")
    tsub = tests.add_subparsers(dest="testset_command", required=True)
    create = tsub.add_parser("create", help="a test set from final grades or reference labels")
    create.add_argument("name", type=_named)
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-final", action="store_true", help="images with a final grade")
    source.add_argument("--reference", help="imported reference labels, e.g. reference:eyepacs")
    create.add_argument("--size", type=int, help="a seeded sample of this many images")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument(
        "--unannounced",
        action="store_true",
        help="mix the images into the grader's queue without saying so",
    )
    create.add_argument("--by", required=True, type=_named, help="the QA lead")
    create.set_defaults(func=lambda a: _create(a, cli))
    assign = tsub.add_parser("assign", help="assign a test set to a grader")
    assign.add_argument("name", type=_named)
    assign.add_argument("grader", type=_named)
    assign.add_argument("--by", required=True, type=_named, help="the QA lead")
    assign.set_defaults(func=lambda a: _assign(a, cli))

    report = sub.add_parser("report", help="write a report a QA lead can send")
    rsub = report.add_subparsers(dest="report_command", required=True)
    graders = rsub.add_parser("graders", help="grader quality against final grades")
    graders.add_argument("--out", required=True, help="report.html, report.pdf or report.png")
    graders.add_argument("--min-sensitivity", type=_fraction, default=0.80)
    graders.add_argument("--min-specificity", type=_fraction, default=0.95)
    graders.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals")
    graders.set_defaults(func=lambda a: _report(a, cli))
    return [prog, setup, role, status, tests, create, assign, report, graders]


def _setup(args: argparse.Namespace, cli: CliHelpers) -> int:
    from sall_desktop.domain.programme import RoutingRules
    from sall_desktop.services.database import writable_store

    try:
        rules = RoutingRules(args.normal_fraction, args.seed, args.dr_step, args.amd_step)
    except ValueError as exc:
        raise cli.error(str(exc)) from exc
    from sall_desktop.domain.programme import ProgrammeRole

    with writable_store(cli.db_path(args)) as store:
        leads = [g for g in store.programme_roles() if g.role is ProgrammeRole.QA and not g.scope]
        if not leads:  # who sets a programme up leads it, as in the workstation's dialog
            store.set_programme_role(args.by, ProgrammeRole.QA, actor=args.by)
        store.set_programme_rules(rules, actor=args.by)
    print(
        f"double grading on: {rules.normal_fraction:.0%} of normals sampled (seed {rules.seed})"
        f", arbitration at a DR difference of {rules.dr_step}"
    )
    return 0


def _role(args: argparse.Namespace, cli: CliHelpers) -> int:
    from sall_desktop.domain.programme import ProgrammeRole
    from sall_desktop.services.database import writable_store

    scope = str(Path(args.scope).absolute()) if args.scope else ""
    with writable_store(cli.db_path(args)) as store:
        if store.programme_rules() is None:
            raise cli.error("no programme is set up: run `sall-desktop programme setup` first")
        store.set_programme_role(
            args.grader,
            ProgrammeRole(args.role),
            actor=args.by,
            scope=scope,
            granted=not args.revoke,
        )
    where = f" for {scope}" if scope else ""
    print(f"{args.grader}: {args.role}{where} {'revoked' if args.revoke else 'granted'}")
    return 0


def _status(args: argparse.Namespace, cli: CliHelpers) -> int:
    from collections import Counter

    from sall_desktop.services.database import readable_store
    from sall_desktop.services.programme import load_state

    with readable_store(cli.db_path(args)) as store:
        state = load_state(store)
        images = store.list_images()
    if state.rules is None:
        print("no programme is set up (single grading)")
        return 0
    r = state.rules
    print(
        f"rules: {r.normal_fraction:.0%} of normals sampled (seed {r.seed}), "
        f"DR step {r.dr_step}, AMD step {r.amd_step}"
    )
    for grader in sorted({g.grader for g in state.roles}):
        roles = ", ".join(
            f"{g.role.value}{' (' + g.scope + ')' if g.scope else ''}"
            for g in state.roles
            if g.grader == grader
        )
        counts = "; ".join(
            f"{c.level.value} {c.todo} to grade, {c.done} done"
            for c in state.counts(grader, images)
        )
        print(f"{grader}: {roles}" + (f" — {counts}" if counts else ""))
    how = Counter(f.how.value for f in state.finals().values())
    print("final grades: " + ", ".join(f"{n} {k}" for k, n in sorted(how.items())))
    return 0


def _create(args: argparse.Namespace, cli: CliHelpers) -> int:
    from sall_desktop.services.database import writable_store
    from sall_desktop.services.programme_report import (
        build_test_set_from_finals,
        build_test_set_from_reference,
    )

    with writable_store(cli.db_path(args)) as store:
        if args.from_final:
            size = build_test_set_from_finals(
                store,
                args.name,
                actor=args.by,
                size=args.size,
                seed=args.seed,
                unannounced=args.unannounced,
            )
        else:
            size = build_test_set_from_reference(
                store, args.name, args.reference, actor=args.by, unannounced=args.unannounced
            )
    print(f"test set {args.name!r}: {size} images")
    return 0


def _assign(args: argparse.Namespace, cli: CliHelpers) -> int:
    from sall_desktop.services.database import writable_store

    with writable_store(cli.db_path(args)) as store:
        store.assign_test_set(args.name, args.grader, actor=args.by)
    print(f"test set {args.name!r} assigned to {args.grader}")
    return 0


def _report(args: argparse.Namespace, cli: CliHelpers) -> int:
    from sall_desktop.services.database import readable_store
    from sall_desktop.services.programme_report import build_report
    from sall_desktop.services.quality import Standards
    from sall_desktop.services.quality_report import summary_lines, write_report

    db = cli.db_path(args)
    out = cli.output(args.out, db)
    if out.suffix.lower() not in (".html", ".htm", ".pdf", ".png"):
        raise cli.error(f"cannot write {out}: the report must be .html, .pdf or .png")
    standards = Standards(args.min_sensitivity, args.min_specificity)
    with readable_store(db) as store:
        report = build_report(store, standards, seed=args.seed)
    if not report.rows and not report.test_rows:
        raise cli.error("nothing to report: no image has a final grade and no test was answered")
    write_report(report, out)
    print("\n".join(summary_lines(report)))
    print(f"report written to {out}")
    return 0
