"""The decode budget: what an image will cost to decode, judged from its header before decoding.

The pixel cap (``max_pixels``) alone lets a 778 KB PNG of 100 Mpx RGBA 16-bit zeros through,
which then needs gigabytes. Two checks close that, both before any decoder runs:

* **Expansion**: the samples a lossless codec would produce, against the compressed bytes
  (:data:`~model_zoo.io.limits.MAX_EXPANSION` times, above
  :data:`~model_zoo.io.limits.EXPANSION_FLOOR_BYTES`). Refused as ``deflate_bomb``.
* **Memory**: the decoder's output at its stored bit depth and channel count, times the copies
  the decoder makes, plus the 8-bit RGB result, against ``max_decode_bytes``. Refused as
  ``too_large``, naming the need and the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from model_zoo.io.errors import LoadError, fail
from model_zoo.io.limits import EXPANSION_FLOOR_BYTES, MAX_EXPANSION

RGB_OUTPUT_BYTES_PER_PIXEL = 4
"""The 8-bit RGB result plus one 8-bit plane (a scaled grey image before it becomes RGB)."""


@dataclass(frozen=True)
class DecodeCost:
    """What decoding one image needs, from its header.

    Attributes:
        width, height: The decoder's output size in pixels (reduced JPEG: the reduced size).
        channels: Samples per pixel the decoder returns (grey + alpha counts as 4: OpenCV
            returns BGRA for it).
        bits: Bits per returned sample, rounded up to whole bytes (1-bit PNG: 8).
        copies: The decoder's peak memory in units of its returned array (1: it writes straight
            into the array it returns).
        extra: Further bytes (a TIFF strip buffer, a colour lookup's output).
        compressed: Bytes of compressed data, for the expansion check; ``None`` exempts the
            image (uncompressed data, or JPEG, whose cost the pixel cap bounds).
        rgb_pixels: Pixels of the full-size RGB result (0: the decoder's output is the result).
    """

    width: int
    height: int
    channels: int
    bits: int
    copies: float = 1.0
    extra: int = 0
    compressed: int | None = None
    rgb_pixels: int = 0

    @property
    def samples_bytes(self) -> int:
        """Bytes of the array the decoder returns."""
        return self.width * self.height * self.channels * ((self.bits + 7) // 8)

    @property
    def memory(self) -> int:
        """Peak bytes of pixel arrays beyond the file's bytes."""
        output = RGB_OUTPUT_BYTES_PER_PIXEL * self.rgb_pixels
        return int(self.samples_bytes * self.copies) + self.extra + output


def size_text(nbytes: int) -> str:
    """``"914 bytes"``, ``"760 KB"``, ``"763 MB"``, ``"1.1 GB"`` (powers of 1024)."""
    if nbytes < 10 << 10:
        return f"{nbytes} bytes"
    if nbytes < 1 << 20:
        return f"{nbytes / 1024:.0f} KB"
    if nbytes < 1 << 30:
        return f"{nbytes / 2**20:.0f} MB"
    return f"{nbytes / 2**30:.1f} GB"


def check_budget(
    path: str | os.PathLike[str], kind: str, cost: DecodeCost, max_decode_bytes: int
) -> None:
    """Refuse ``path`` before decoding when ``cost`` exceeds the expansion or memory limit.

    Raises:
        LoadError: ``deflate_bomb`` or ``too_large``, with a sentence naming the limit.
    """
    samples = cost.samples_bytes
    if cost.compressed is not None:
        allowed = max(EXPANSION_FLOOR_BYTES, MAX_EXPANSION * cost.compressed)
        if samples > allowed:
            raise _expansion_refusal(path, kind, samples, cost.compressed)
    if cost.memory > max_decode_bytes:
        depth = f"{cost.channels} × {cost.bits}-bit sample(s) per pixel"
        raise fail(
            path,
            "too_large",
            f"is a {kind} image of {cost.width} × {cost.height} pixels with {depth}: decoding "
            f"it needs about {size_text(cost.memory)} of memory, above the "
            f"{size_text(max_decode_bytes)} limit for one image",
        )


def _expansion_refusal(
    path: str | os.PathLike[str], kind: str, samples: int, compressed: int
) -> LoadError:
    ratio = samples / max(compressed, 1)
    return fail(
        path,
        "deflate_bomb",
        f"is a {kind} image whose {size_text(compressed)} of compressed data would expand to "
        f"{size_text(samples)} ({ratio:,.0f} times; the limit is {MAX_EXPANSION} times beyond "
        f"{size_text(EXPANSION_FLOOR_BYTES)}), like a decompression bomb; it was not decoded",
    )
