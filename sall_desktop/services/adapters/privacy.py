"""Export privacy: keyed pseudonyms (R19), safe names inside the export folder (R18) and
lossless removal of embedded metadata from JPEG/PNG files.

Pseudonyms are HMAC-SHA256 of the content hash (or patient id) keyed with a *site key*: the same
image gets the same pseudonym at one site and an unrelated one at another, and nobody without the
key can link a pseudonym back to the image. The key lives in the app's data folder, never in an
export folder.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
from pathlib import Path

from model_zoo.fileio import atomic_write_bytes

SITE_KEY_FILE = "site_key.bin"
SITE_KEY_BYTES = 32
PSEUDONYM_HEX = 24
"""96 bits: collisions are negligible for any realistic number of images or patients."""
MAX_NAME_CHARS = 120
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')


class PrivacyError(ValueError):
    """A de-identification step refused its input (no key, unsafe target, unstrippable file)."""


def load_or_create_site_key(folder: Path) -> bytes:
    """The site's pseudonym key, created (random, written atomically) on first use.

    Args:
        folder: the app's data folder (``services.paths.data_dir()``), not an export folder.

    Raises:
        PrivacyError: the key file exists but is not a key (wrong size).
        OSError: the folder cannot be written.
    """
    path = folder / SITE_KEY_FILE
    if path.exists():
        key = path.read_bytes()
        if len(key) != SITE_KEY_BYTES:
            raise PrivacyError(
                f"{path} is not a site key ({len(key)} bytes); restore it from backup"
            )
        return key
    key = secrets.token_bytes(SITE_KEY_BYTES)
    atomic_write_bytes(path, key)
    return key


def pseudonym(key: bytes, value: str, *, kind: str) -> str:
    """Keyed pseudonym of ``value`` (lowercase hex, :data:`PSEUDONYM_HEX` characters).

    Args:
        key: the site key (at least 16 bytes).
        value: what is hidden: an image sha256, a patient id.
        kind: namespace (``image``, ``patient``) so equal strings of different kinds differ.

    Raises:
        PrivacyError: a key shorter than 16 bytes.
    """
    if len(key) < 16:
        raise PrivacyError("the site key must be at least 16 bytes")
    digest = hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_HEX]


def safe_file_name(name: str, *, fallback: str = "file") -> str:
    """A file name valid on Windows and POSIX that cannot name another folder (R18).

    Separators, control characters (NUL included) and ``<>:"|?*`` become ``_``; leading dots,
    trailing dots and spaces are removed; Windows device names (``CON``, ``COM1``, ...) get a
    ``_`` prefix; the result is at most :data:`MAX_NAME_CHARS` characters, extension kept.
    """
    cleaned = _UNSAFE.sub("_", name).strip().strip(".").strip()
    if not cleaned:
        cleaned = fallback
    stem, dot, suffix = cleaned.rpartition(".")
    if not dot or not stem or len(suffix) > 10:
        stem, suffix = cleaned, ""
    if stem.split(".")[0].casefold() in _WINDOWS_RESERVED:
        stem = "_" + stem
    room = MAX_NAME_CHARS - (len(suffix) + 1 if suffix else 0)
    stem = stem[:room].rstrip(". ") or fallback
    return f"{stem}.{suffix}" if suffix else stem


def safe_target(root: Path, *parts: str) -> Path:
    """``root / parts...`` after checking it stays inside ``root`` (R18).

    Raises:
        PrivacyError: a part is not a plain name, or the resolved target (following any
            symbolic link on the way) lies outside ``root``.
    """
    for part in parts:
        if part != safe_file_name(part, fallback="\0"):
            raise PrivacyError(f"{part!r} is not a safe file name")
    base = root.resolve()
    target = base.joinpath(*parts)
    if not target.resolve().is_relative_to(base):
        raise PrivacyError(f"{target} would be written outside {base}")
    return target


def sniff_image_format(head: bytes) -> str:
    """``jpeg``, ``png``, ``bmp``, ``tiff``, ``dicom`` or "" from a file's first 132 bytes."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    return ""


# JPEG segments kept when stripping: JFIF (APP0), ICC colour profile (APP2) and Adobe (APP14)
# change how pixels are shown and hold no free text; EXIF/XMP (APP1), others and comments go.
_KEEP_APP = {0xE0: b"JFIF", 0xE2: b"ICC_PROFILE", 0xEE: b"Adobe"}


def strip_jpeg_metadata(data: bytes) -> bytes:
    """Remove EXIF, XMP, comments and vendor segments from a JPEG without re-encoding.

    Raises:
        PrivacyError: not a well-formed JPEG header.
    """
    if not data.startswith(b"\xff\xd8"):
        raise PrivacyError("not a JPEG file")
    out = bytearray(b"\xff\xd8")
    pos = 2
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise PrivacyError("truncated or malformed JPEG header")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is pixel data
            out += data[pos:]
            return bytes(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out += data[pos : pos + 2]
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise PrivacyError("truncated or malformed JPEG segment")
        body = data[pos + 4 : end]
        is_app = 0xE0 <= marker <= 0xEF
        keep = not is_app and marker != 0xFE
        if is_app and marker in _KEEP_APP:
            keep = body.startswith(_KEEP_APP[marker])
        if keep:
            out += data[pos:end]
        pos = end


_PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})


def strip_png_metadata(data: bytes) -> bytes:
    """Remove text, EXIF and time chunks from a PNG without re-encoding.

    Raises:
        PrivacyError: not a well-formed PNG.
    """
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        raise PrivacyError("not a PNG file")
    out = bytearray(signature)
    pos = len(signature)
    while pos < len(data):
        if pos + 12 > len(data):
            raise PrivacyError("truncated PNG chunk")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise PrivacyError("truncated PNG chunk")
        if kind not in _PNG_TEXT_CHUNKS:
            out += data[pos:end]
        pos = end
        if kind == b"IEND":
            break
    return bytes(out)
