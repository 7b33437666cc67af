"""``sall-desktop verify``: check the label database's audit chain and gradings against it.

Registered by ``sall_desktop.__main__.build_parser`` with the shared CLI helpers.
"""

from __future__ import annotations

import argparse

from sall_desktop.cli_programme import CliHelpers


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], cli: CliHelpers
) -> list[argparse.ArgumentParser]:
    """Add ``verify`` to ``sub``; return its parser (for the shared options)."""
    verify = sub.add_parser(
        "verify",
        help="check the audit trail and every grading against it (exit 1 if altered)",
        description="Replays the hash-chained audit trail grading by grading: an edited, "
        "inserted or deleted grading, a renamed grader or a cut trail is reported. The chain "
        "head printed on success is what exports record; keep it to compare later.",
    )
    verify.set_defaults(func=lambda a: _verify(a, cli))
    return [verify]


def _verify(args: argparse.Namespace, cli: CliHelpers) -> int:
    from sall_desktop.services.database import readable_store

    with readable_store(cli.db_path(args)) as store:
        report = store.verify()
    print(report.format())
    return 0 if report.ok else 1
