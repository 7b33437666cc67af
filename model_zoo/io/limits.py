"""Size limits shared by every decoder (no heavy imports: read before cv2 is imported)."""

from __future__ import annotations

#: Default cap on header-declared pixels (DICOM: rows × columns × frames), checked before
#: decoding. Also the value given to ``OPENCV_IO_MAX_IMAGE_PIXELS``.
DEFAULT_MAX_PIXELS = 100_000_000


def file_size_cap(max_pixels: int) -> int:
    """Largest file ``read_image`` reads into memory, in bytes.

    8 bytes per allowed pixel covers 16-bit RGBA rasters and 16-bit RGB DICOM stored
    uncompressed; 64 MiB more covers headers and small images with a tiny ``max_pixels``.
    """
    return 8 * max_pixels + (64 << 20)
