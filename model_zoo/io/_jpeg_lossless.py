"""Minimal JPEG Lossless (ITU T.81 process 14, selection value 1) encoder, pure numpy.

No installed package encodes the DICOM "JPEG Lossless SV1" transfer syntax, so test corpora
and synthetic DICOM files use this one. It favours simplicity over compression: a single
fixed Huffman table gives every difference category (0-16) a 5-bit code.
"""

from __future__ import annotations

import struct

import numpy as np
from numpy.typing import NDArray

_CODE_BITS = 5
_CATEGORIES = 17  # SSSS 0..16; 5-bit codes 0..16 never form the forbidden all-ones code


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload


def _differences(image: NDArray[np.int64], precision: int) -> NDArray[np.int64]:
    """Return predictor-1 differences in scan order (row, column, component), modulo 2**16."""
    pred = np.empty_like(image)
    pred[:, 1:] = image[:, :-1]  # Ra: the sample to the left
    pred[1:, 0] = image[:-1, 0]  # first column of later rows: Rb, the sample above
    pred[0, 0] = 1 << (precision - 1)  # first sample: 2**(P-1)
    diff = (image - pred) & 0xFFFF
    # T.81 H.1.2.1: differences are taken modulo 2**16; 32768 is coded as SSSS=16 (positive).
    return np.where(diff > 32768, diff - 65536, diff).reshape(-1)


def _pack_bits(values: NDArray[np.int64], lengths: NDArray[np.int64]) -> bytes:
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    shifts = np.repeat(lengths, lengths) - 1 - (np.arange(total) - starts)
    bits = (np.repeat(values, lengths) >> shifts) & 1
    pad = (-total) % 8
    bits = np.concatenate([bits, np.ones(pad, dtype=np.int64)])  # pad with 1-bits (F.1.2.3)
    data = np.packbits(bits.astype(np.uint8)).tobytes()
    return data.replace(b"\xff", b"\xff\x00")  # byte stuffing


def encode_lossless_sv1(frame: np.ndarray) -> bytes:
    """Encode one frame as a JPEG Lossless SV1 codestream.

    Args:
        frame: H×W (grey) or H×W×C (C ≤ 4) array of ``uint8`` or ``uint16``.

    Returns:
        The complete codestream, SOI to EOI. Components are interleaved with no colour
        transform (what DICOM expects for RGB with this syntax).
    """
    array = np.asarray(frame)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"lossless JPEG encoder takes uint8 or uint16, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, components = array.shape
    precision = 8 * array.dtype.itemsize
    diff = _differences(array.astype(np.int64), precision)
    magnitude = np.abs(diff)
    category = np.zeros_like(magnitude)
    nonzero = magnitude > 0
    category[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    extra = np.where(diff >= 0, diff, diff + (1 << category) - 1) & ((1 << category) - 1)
    extra = np.where(category == 16, 0, extra)  # SSSS=16 carries no additional bits
    extra_len = np.where(category == 16, 0, category)
    values = (category << extra_len) | extra
    scan = _pack_bits(values, _CODE_BITS + extra_len)

    bits_per_length = bytes(_CATEGORIES if n == _CODE_BITS else 0 for n in range(1, 17))
    dht = _segment(0xC4, b"\x00" + bits_per_length + bytes(range(_CATEGORIES)))
    sof = _segment(
        0xC3,
        struct.pack(">BHHB", precision, height, width, components)
        + b"".join(struct.pack(">BBB", c + 1, 0x11, 0) for c in range(components)),
    )
    sos = _segment(
        0xDA,
        bytes([components])
        + b"".join(bytes([c + 1, 0x00]) for c in range(components))
        + bytes([1, 0, 0]),  # Ss = predictor 1, Se = 0, Ah/Al = 0 (no point transform)
    )
    return b"\xff\xd8" + dht + sof + sos + scan + b"\xff\xd9"
