"""Size limits shared by every decoder (no heavy imports: read before cv2 is imported)."""

from __future__ import annotations

#: Default cap on header-declared pixels (DICOM: rows × columns × frames), checked before
#: decoding. Also the value given to ``OPENCV_IO_MAX_IMAGE_PIXELS``.
DEFAULT_MAX_PIXELS = 100_000_000

#: Default cap on the memory one decode may need for its pixel arrays, beyond the file's own
#: bytes: the decoder's output at the stored bit depth and channel count, times the copies the
#: decoder makes (OpenCV holds two), plus the 8-bit RGB result. Estimated from the header and
#: checked before decoding, in every process (the GUI's decode processes, the command line,
#: training). 1.75 GiB: a 100 Mpx 16-bit RGB PNG, TIFF or uncompressed DICOM fits; the same
#: image with an alpha channel does not; with the largest file read, it stays well inside a
#: decode process's address-space cap.
DEFAULT_MAX_DECODE_BYTES = 7 << 28

#: A lossless-compressed image may decode to at most this many times its compressed size ...
MAX_EXPANSION = 32
#: ... once its decoded samples exceed this many bytes (smaller images are always allowed).
#: Beyond it, a file that expands further is a decompression bomb: a legitimate photograph
#: compresses losslessly a few times at most. JPEG (DCT) is exempt: its cost is bounded by its
#: pixels, and a dark, smooth photograph compresses far more than a lossless one.
EXPANSION_FLOOR_BYTES = 128 << 20

#: Marker segments (standalone markers included) a JPEG may have before its first scan ...
MAX_JPEG_SEGMENTS = 2048
#: ... and bytes before its first scan (fill bytes included).
MAX_JPEG_HEADER_BYTES = 16 << 20

#: Chunks a PNG may have besides image data (IDAT) ...
MAX_PNG_OTHER_CHUNKS = 4096
#: ... and in all: image data in 8 KB chunks (libpng's default) covers more than the file cap.
MAX_PNG_CHUNKS = 1 << 18

#: Data elements (nested ones and sequence items included) a DICOM data set may have. Checked
#: by a walk that stops at the limit, before pydicom builds an object per element.
MAX_DICOM_ELEMENTS = 100_000


def file_size_cap(max_pixels: int) -> int:
    """Largest file ``read_image`` reads into memory, in bytes.

    8 bytes per allowed pixel covers 16-bit RGBA rasters and 16-bit RGB DICOM stored
    uncompressed; 64 MiB more covers headers and small images with a tiny ``max_pixels``.
    """
    return 8 * max_pixels + (64 << 20)
