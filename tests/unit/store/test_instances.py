"""R2: one writer process, network shares fall back with a warning, no linked databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sall_desktop.store import StoreLockedError, StoreWriteError, fs_probe, open_store
from tests.unit.store.conftest import HANG_GUARD_S

# The second process says when it has its first count, then reads until it has seen the
# writer's commits move the count three times (or until the hang guard in argv[2] runs out).
_SECOND_INSTANCE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from sall_desktop.store import open_store
    store = open_store(Path(sys.argv[1]))
    info = {"read_only": store.read_only, "reason": store.read_only_reason}
    seen, errors, deadline = [], [], time.monotonic() + float(sys.argv[2])
    seen.append(len(store.current_gradings()))
    print("ready", flush=True)
    while len(set(seen)) < 4 and not errors and time.monotonic() < deadline:
        try:
            seen.append(len(store.current_gradings()))
        except Exception as err:  # any error, "database is locked" included, fails the test
            errors.append(repr(err))
    info.update(seen_first=seen[0], seen_last=seen[-1], reads=len(seen), errors=errors)
    store.close()
    print(json.dumps(info))
    """
)


def _spawn(db: Path, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _SECOND_INSTANCE, str(db), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_process_is_read_only_and_both_work_concurrently(db_path, grading) -> None:
    with open_store(db_path) as first:
        first.add_grading(grading(0))
        child = _spawn(db_path, HANG_GUARD_S)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        written = 1
        while child.poll() is None:  # the writer keeps committing while the reader reads
            first.add_grading(grading(written))
            written += 1
        out, err = child.communicate(timeout=HANG_GUARD_S)
        assert child.returncode == 0, err
        info = json.loads(out)
        assert info["read_only"] is True
        assert (
            "Another SALL Desktop window" in info["reason"] and str(os.getpid()) in info["reason"]
        )
        assert info["errors"] == []
        assert info["reads"] > 1 and info["seen_last"] > info["seen_first"] >= 1
        assert not first.read_only
        assert len(first.current_gradings()) == written


def test_second_open_in_one_process_is_read_only_and_cannot_write(db_path, grading) -> None:
    with open_store(db_path) as first:
        with open_store(db_path) as second:
            assert second.read_only and not first.read_only
            with pytest.raises(StoreWriteError, match="Another SALL Desktop window"):
                second.add_grading(grading(1))
        first.add_grading(grading(1))
    with open_store(db_path) as again:  # the lock went with the first store
        assert not again.read_only


def test_a_command_line_writer_can_insist_on_writing(db_path) -> None:
    with open_store(db_path):
        with pytest.raises(StoreLockedError, match="Another SALL Desktop window"):
            open_store(db_path, require_writer=True)
    open_store(db_path, require_writer=True).close()


@pytest.mark.parametrize("fs_type", ["nfs", "nfs4", "cifs", "smb3", "vboxsf"])
def test_network_filesystem_falls_back_to_delete_journal_with_a_warning(
    tmp_path: Path, fs_type: str, grading
) -> None:
    probed: list[Path] = []

    def fake_probe(path: Path) -> str:
        probed.append(path)
        return fs_type

    with open_store(tmp_path / "share.sqlite3", probe=fake_probe) as store:
        assert probed == [tmp_path / "share.sqlite3"]
        assert store.journal_mode == "DELETE"
        assert store.connection_settings()["journal_mode"] == "delete"
        assert len(store.warnings) == 1 and fs_type in store.warnings[0]
        assert "network or shared folder" in store.warnings[0]
        store.add_grading(grading(1))
        assert len(store.current_gradings()) == 1
    assert not (tmp_path / "share.sqlite3-wal").exists()


def test_local_filesystem_keeps_wal(tmp_path: Path) -> None:
    with open_store(tmp_path / "l.sqlite3", probe=lambda _: "ext4") as store:
        assert store.journal_mode == "WAL" and store.warnings == []
        assert store.connection_settings()["journal_mode"] == "wal"


def test_journal_policy() -> None:
    assert fs_probe.journal_policy("ext4").journal_mode == "WAL"
    assert fs_probe.journal_policy("unknown").warning is None
    for kind in ("nfs", "NFS4", "cifs", "smbfs", "vboxsf", "9p", "fuse.sshfs"):
        policy = fs_probe.journal_policy(kind)
        assert policy.journal_mode == "DELETE" and policy.warning


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export /mnt/labs nfs4 rw 0 0
//nas/share /mnt/labs/smb\\040share cifs rw 0 0
tmpfs /mnt/labs/tmp tmpfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/grader/labels.sqlite3", "ext4"),
        ("/mnt/labs/study/labels.sqlite3", "nfs4"),
        ("/mnt/labs/smb share/labels.sqlite3", "cifs"),
        ("/mnt/labs/tmpx/labels.sqlite3", "nfs4"),  # a prefix of the name is not a mount
        ("/mnt/labs/tmp", "tmpfs"),
    ],
)
def test_mount_table_lookup(path: str, expected: str) -> None:
    mounts = fs_probe.parse_mounts(MOUNTS)
    assert fs_probe.fs_type_from_mounts(Path(path), mounts) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/mounts")
def test_probe_reads_this_machines_mount_table(tmp_path: Path) -> None:
    kind = fs_probe.filesystem_type(tmp_path / "not-yet" / "labels.sqlite3")
    assert kind != "unknown" and kind == kind.lower()


def test_symlinked_database_opens_read_only(tmp_path: Path, grading) -> None:
    real = tmp_path / "real.sqlite3"
    with open_store(real) as store:
        store.add_grading(grading(1))
    link = tmp_path / "link.sqlite3"
    link.symlink_to(real)
    with open_store(link) as store:
        assert store.read_only and "symbolic link" in store.read_only_reason
        assert len(store.current_gradings()) == 1
