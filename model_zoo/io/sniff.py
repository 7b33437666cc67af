"""Magic-byte allowlist (R15): only these formats ever reach a decoder.

Without the allowlist OpenCV would pick whichever codec recognises the bytes (PxM, HDR,
JPEG 2000, SUN raster, WebP, AVIF...), several of which have had memory-safety advisories.
"""

from __future__ import annotations

#: How many leading bytes :func:`sniff_format` needs to see (DICOM's magic sits at 128).
HEAD_BYTES = 132

_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}

# Formats we recognise only to name them in the refusal message.
_KNOWN_OTHERS: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WebP"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000 codestream"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "JPEG 2000"),
    (b"#?RADIANCE", 0, "Radiance HDR"),
    (b"#?RGBE", 0, "Radiance HDR"),
    (b"SIMPLE  =", 0, "FITS"),
    (b"%!PS", 0, "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"%PDF", 0, "PDF"),
    (b"8BPS", 0, "Photoshop"),
    (b"v/1\x01", 0, "OpenEXR"),
    (b"\x59\xa6\x6a\x95", 0, "SUN raster"),
    (b"\x00\x00\x01\x00", 0, "Windows icon"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"),
    (b"PK\x03\x04", 0, "ZIP archive"),
    (b"\x1f\x8b", 0, "gzip archive"),
)
_FTYP_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF"}


def sniff_format(head: bytes) -> str | None:
    """Identify an allowlisted image format from the first bytes of a file.

    Args:
        head: The file's first :data:`HEAD_BYTES` bytes (fewer if the file is shorter).

    Returns:
        ``"dicom"`` (``DICM`` at offset 128, checked first because a DICOM preamble may hold
        anything, including TIFF magic), ``"jpeg"``, ``"png"``, ``"tiff"`` (classic or BigTIFF),
        ``"bmp"`` (``BM`` plus a known DIB header size), or ``None`` for anything else.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
            return "bmp"
    return None


def _looks_like_text(head: bytes) -> bool:
    sample = head[:HEAD_BYTES]
    if sample.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True  # UTF-8/16 byte-order marks
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(sample) - 3:  # only a multi-byte character cut at the end is fine
            return False
        text = sample[: error.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


def describe_unknown(head: bytes) -> tuple[str, str]:
    """Explain why a file that :func:`sniff_format` refused is refused.

    Returns:
        ``(reason, detail)``: ``reason`` is ``"unsupported_format"`` for a recognised but
        disallowed image or document format, else ``"not_an_image"``; ``detail`` completes a
        sentence that starts with the file name.
    """
    for magic, offset, name in _KNOWN_OTHERS:
        if head[offset : offset + len(magic)] == magic:
            if magic == b"WEBP" and head[:4] != b"RIFF":
                continue
            return "unsupported_format", f"is a {name} file, an unsupported format"
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return "unsupported_format", f"is a {_FTYP_BRANDS[head[8:12]]} file, an unsupported format"
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"1234567fF" and head[1:2] != b"":
        if len(head) < 3 or head[2:3] in b" \t\r\n":
            return "unsupported_format", "is a PNM/PAM (Netpbm) file, an unsupported format"
    if head[:2] == b"BM":
        return "not_an_image", "is not a valid BMP file (its header is not recognised)"
    if _looks_like_text(head):
        return "not_an_image", "is not an image file (it starts like a text file)"
    return "not_an_image", "is not an image file (its first bytes match no supported format)"
