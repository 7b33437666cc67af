"""Which filesystem holds the database, and what SQLite may safely do there (R2).

WAL needs shared memory between processes of one host, which network and virtual-machine shares
do not give; SQLite's locking is unreliable on them as well. On such a share the store falls back
to ``journal_mode=DELETE`` and says so.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

NETWORK_FILESYSTEMS: frozenset[str] = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb2",
        "smb3",
        "smbfs",
        "vboxsf",
        "9p",
        "virtiofs",
        "fuse.sshfs",
        "afs",
        "ncpfs",
        "prl_fs",
        "vmhgfs",
        "fuse.vmhgfs-fuse",
        "remote",
    }
)
"""Filesystem types (as in /proc/mounts) where WAL is refused."""


@dataclass(frozen=True, slots=True)
class JournalPolicy:
    """How to open a database on a given filesystem.

    Attributes:
        fs_type: the probed filesystem type ("ext4", "nfs", ..., or "unknown").
        journal_mode: "WAL" on local disks, "DELETE" on network shares.
        warning: grader-readable warning when the fallback applies, else None.
    """

    fs_type: str
    journal_mode: str
    warning: str | None


def _unescape_mount_field(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes (\040 ...).
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """Parse /proc/mounts text into (mount point, filesystem type) pairs.

    Args:
        text: the content of /proc/mounts (or /proc/self/mounts).

    Returns:
        One pair per well-formed line, in file order (later mounts shadow earlier ones).
    """
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append((_unescape_mount_field(parts[1]), parts[2]))
    return mounts


def fs_type_from_mounts(path: Path, mounts: list[tuple[str, str]]) -> str:
    """The type of the filesystem whose mount point is the longest prefix of ``path``."""
    target = str(path)
    best, best_type = -1, "unknown"
    for mount_point, fs_type in mounts:
        prefix = mount_point.rstrip("/") + "/"
        if (target == mount_point or target.startswith(prefix) or mount_point == "/") and len(
            mount_point
        ) >= best:
            best, best_type = len(mount_point), fs_type
    return best_type


def _existing_ancestor(path: Path) -> Path:
    # The database may not exist yet: probe the nearest folder that does.
    candidate = path.absolute()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return Path(os.path.realpath(candidate))


def filesystem_type(path: Path) -> str:
    """Probe the filesystem type that holds ``path`` (which need not exist yet).

    Linux reads /proc/self/mounts; Windows reports "smb" for UNC paths and "remote" for mapped
    network drives. Elsewhere, or when the probe fails, the answer is "unknown" (treated as local).

    Args:
        path: the database file or any path inside the folder to probe.

    Returns:
        A lowercase type name such as "ext4", "nfs4", "cifs" or "unknown".
    """
    if sys.platform.startswith("linux"):
        try:
            text = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "unknown"
        return fs_type_from_mounts(_existing_ancestor(path), parse_mounts(text)).lower()
    if sys.platform == "win32":
        return _windows_fs_type(path)
    return "unknown"


def _windows_fs_type(path: Path) -> str:
    if sys.platform != "win32":  # lets mypy check this body only for Windows
        return "unknown"
    absolute = str(path.absolute())
    if absolute.startswith("\\\\"):
        return "smb"
    import ctypes  # Windows only; keeps the import off other platforms' start-up

    drive = os.path.splitdrive(absolute)[0] + "\\"
    drive_remote = 4
    kernel32 = ctypes.WinDLL("kernel32")
    if int(kernel32.GetDriveTypeW(drive)) == drive_remote:
        return "remote"
    return "unknown"


def journal_policy(fs_type: str) -> JournalPolicy:
    """Decide the journal mode for a filesystem type (R2).

    Args:
        fs_type: the result of :func:`filesystem_type`.

    Returns:
        WAL for local filesystems; DELETE plus a warning on network or shared-folder filesystems.
    """
    kind = fs_type.lower()
    if kind in NETWORK_FILESYSTEMS or kind.startswith(("nfs", "smb", "cifs")):
        return JournalPolicy(
            fs_type=kind,
            journal_mode="DELETE",
            warning=(
                f"The label database is on a network or shared folder ({kind}). SQLite cannot "
                "protect it fully there: saving is slower and two computers must never open it "
                "at once. Move it to a local disk when you can."
            ),
        )
    return JournalPolicy(fs_type=kind, journal_mode="WAL", warning=None)
