"""Write small, valid DICOM files from an RGB or grey array (test corpora, synthetic data).

Supported ``transfer_syntax`` values (what can be *encoded* with the installed packages):

| name              | UID                       | encoder                                        |
|-------------------|---------------------------|------------------------------------------------|
| ``explicit_le``   | 1.2.840.10008.1.2.1       | none (native)                                  |
| ``implicit_le``   | 1.2.840.10008.1.2         | none (native)                                  |
| ``deflated``      | 1.2.840.10008.1.2.1.99    | pydicom deflates the data set on write         |
| ``rle``           | 1.2.840.10008.1.2.5       | pydicom's native RLE encoder                   |
| ``jpeg_baseline`` | 1.2.840.10008.1.2.4.50    | OpenCV (YBR photometrics) / Pillow (``RGB``)   |
| ``jpeg2000``      | 1.2.840.10008.1.2.4.90    | pylibjpeg-openjpeg, lossless                   |
| ``jpeg_lossless`` | 1.2.840.10008.1.2.4.70    | :mod:`model_zoo.io._jpeg_lossless` (pure numpy) |

``jpeg_ls`` is *not* encodable here (pyjpegls is not installed); asking for it raises
``ValueError``. Decoding JPEG-LS is still supported through pylibjpeg.

JPEG Baseline photometrics: ``YBR_FULL_422`` (default; 4:2:2 chroma, JFIF), ``YBR_FULL``
(4:4:4), ``RGB`` (no colour transform, Adobe APP14 marker with transform 0, as Pillow's
``keep_rgb`` writes it) and ``MONOCHROME2`` for an H×W array.
"""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pydicom.uid as uids
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite

from model_zoo.fileio import atomic_write_bytes
from model_zoo.io._jpeg_lossless import encode_lossless_sv1

SOP_CLASSES: dict[str, tuple[str, str]] = {
    # name: (SOP Class UID, Modality)
    "op8": ("1.2.840.10008.5.1.4.1.1.77.1.5.1", "OP"),
    "op16": ("1.2.840.10008.5.1.4.1.1.77.1.5.2", "OP"),
    "wf": ("1.2.840.10008.5.1.4.1.1.77.1.5.5", "OP"),
    "vl": ("1.2.840.10008.5.1.4.1.1.77.1.4", "XC"),
    "sc": ("1.2.840.10008.5.1.4.1.1.7", "OT"),
    "oct": ("1.2.840.10008.5.1.4.1.1.77.1.5.4", "OPT"),
}
TRANSFER_SYNTAXES: dict[str, str] = {
    "explicit_le": uids.ExplicitVRLittleEndian,
    "implicit_le": uids.ImplicitVRLittleEndian,
    "deflated": uids.DeflatedExplicitVRLittleEndian,
    "rle": uids.RLELossless,
    "jpeg_baseline": uids.JPEGBaseline8Bit,
    "jpeg2000": uids.JPEG2000Lossless,
    "jpeg_lossless": uids.JPEGLosslessSV1,
}
_MULTIFRAME_CLASSES = {"op8", "op16", "wf", "oct"}


def _frames_stack(rgb: NDArray[np.generic], frames: int) -> NDArray[np.generic]:
    # Frames after the first are inverted copies, so a reader that returns the wrong frame
    # is caught by a pixel comparison.
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if not np.issubdtype(rgb.dtype, np.unsignedinteger):
        raise ValueError(f"pixel array must be uint8 or uint16, got {rgb.dtype}")
    maximum = (1 << (8 * rgb.dtype.itemsize)) - 1
    inverted = (maximum - rgb).astype(rgb.dtype)
    return np.stack([rgb] + [inverted] * (frames - 1))


def _encode_jpeg(frame: NDArray[np.uint8], photometric: str, quality: int) -> bytes:
    if photometric == "RGB":
        # libjpeg's JCS_RGB: components stored untransformed, Adobe APP14 transform=0.
        buffer = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buffer, "JPEG", quality=quality, keep_rgb=True)
        return buffer.getvalue()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if frame.ndim == 3:
        sampling = {
            "YBR_FULL_422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
            "YBR_FULL": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
        }[photometric]
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
        frame = np.ascontiguousarray(frame[:, :, ::-1])  # OpenCV encodes BGR
    ok, encoded = cv2.imencode(".jpg", frame, params)
    if not ok:
        raise ValueError("OpenCV failed to encode the JPEG frame")
    return bytes(encoded.tobytes())


def _check_photometric(transfer_syntax: str, photometric: str, samples: int) -> None:
    if samples == 1:
        if photometric != "MONOCHROME2":
            raise ValueError(f"a grey (H x W) array needs MONOCHROME2, not {photometric}")
        return
    allowed = {"RGB"}
    if transfer_syntax == "jpeg_baseline":
        allowed = {"RGB", "YBR_FULL_422", "YBR_FULL"}
    if photometric not in allowed:
        raise ValueError(
            f"photometric {photometric!r} is not writable with {transfer_syntax}; use {allowed}"
        )


def write_dicom(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    *,
    transfer_syntax: str = "jpeg_baseline",
    laterality: str = "",
    patient_id: str = "",
    study_date: str = "",
    sop_class: str = "op8",
    photometric: str | None = None,
    frames: int = 1,
    jpeg_quality: int = 92,
) -> None:
    """Write ``rgb`` as a DICOM Part 10 file, atomically (temp file + fsync + rename).

    Args:
        path: Target file; parent folders are created.
        rgb: H×W×3 RGB or H×W grey pixels, ``uint8`` (any syntax) or ``uint16`` (not
            ``jpeg_baseline``). ``uint16`` writes BitsAllocated = BitsStored = 16.
        transfer_syntax: One of ``TRANSFER_SYNTAXES`` (see the module docstring); ``jpeg_ls``
            and unknown names raise ``ValueError``.
        laterality: Image Laterality (0020,0062): ``"R"``, ``"L"``, ``"B"`` or ``""`` (omitted).
        patient_id: Patient ID (0010,0020); empty is written as an empty value.
        study_date: Study Date (0008,0020) as ``YYYYMMDD`` or ``""``.
        sop_class: ``"op8"``, ``"op16"``, ``"wf"`` (wide field), ``"vl"``, ``"sc"`` or
            ``"oct"`` (not on the reader's allowlist: for refusal tests).
        photometric: Photometric Interpretation. Default ``YBR_FULL_422`` for
            ``jpeg_baseline``, ``RGB`` otherwise, ``MONOCHROME2`` for a grey array.
        frames: Number of frames; frame 0 is ``rgb``, later frames are its inverse
            (``max - rgb``) so first-frame selection is testable.
        jpeg_quality: libjpeg quality 1-100 for ``jpeg_baseline``.

    Raises:
        ValueError: Unsupported combination of arguments.
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(
            f"cannot encode transfer syntax {transfer_syntax!r}; "
            f"supported: {sorted(TRANSFER_SYNTAXES)}"
        )
    if sop_class not in SOP_CLASSES:
        raise ValueError(f"unknown sop_class {sop_class!r}; supported: {sorted(SOP_CLASSES)}")
    if laterality not in ("", "R", "L", "B"):
        raise ValueError(f"laterality must be R, L, B or empty, got {laterality!r}")
    array = np.asarray(rgb)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"expected an H x W x 3 or H x W array, got shape {array.shape}")
    samples = 1 if array.ndim == 2 else 3
    if photometric is None:
        if samples == 1:
            photometric = "MONOCHROME2"
        else:
            photometric = "YBR_FULL_422" if transfer_syntax == "jpeg_baseline" else "RGB"
    _check_photometric(transfer_syntax, photometric, samples)
    stack = _frames_stack(array, frames)
    bits = 8 * stack.dtype.itemsize
    if transfer_syntax == "jpeg_baseline" and bits != 8:
        raise ValueError("JPEG Baseline holds 8-bit samples only")

    ds = _image_dataset(
        stack,
        transfer_syntax=transfer_syntax,
        sop_class=sop_class,
        photometric=photometric,
        laterality=laterality,
        patient_id=patient_id,
        study_date=study_date,
    )
    _set_pixel_data(ds, stack, transfer_syntax, photometric, jpeg_quality)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    atomic_write_bytes(path, buffer.getvalue())


def _image_dataset(
    stack: np.ndarray,
    *,
    transfer_syntax: str,
    sop_class: str,
    photometric: str,
    laterality: str,
    patient_id: str,
    study_date: str,
) -> Dataset:
    """File meta and image attributes of ``stack`` (frames × H × W [× 3]), no pixel data yet."""
    frames, samples = stack.shape[0], 1 if stack.ndim == 3 else 3
    bits = 8 * stack.dtype.itemsize
    sop_uid, modality = SOP_CLASSES[sop_class]
    instance_uid = uids.generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uids.UID(sop_uid)
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = uids.UID(TRANSFER_SYNTAXES[transfer_syntax])
    meta.ImplementationClassUID = uids.PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_uid
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = uids.generate_uid()
    ds.SeriesInstanceUID = uids.generate_uid()
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = ""
    ds.StudyDate = study_date
    ds.BurnedInAnnotation = "NO"
    ds.InstanceNumber = 1
    if laterality:
        ds.ImageLaterality = laterality
    ds.Rows, ds.Columns = int(stack.shape[1]), int(stack.shape[2])
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1 or sop_class in _MULTIFRAME_CLASSES:
        ds.NumberOfFrames = frames
    return ds


def _set_pixel_data(
    ds: Dataset, stack: np.ndarray, transfer_syntax: str, photometric: str, jpeg_quality: int
) -> None:
    """Encode ``stack`` into ``ds.PixelData`` with ``transfer_syntax``."""
    frames, bits = stack.shape[0], 8 * stack.dtype.itemsize
    if transfer_syntax == "jpeg_baseline":
        encoded = [_encode_jpeg(f, photometric, jpeg_quality) for f in stack]
        ds.PixelData = encapsulate(encoded, has_bot=True)
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    elif transfer_syntax == "jpeg_lossless":
        ds.PixelData = encapsulate([encode_lossless_sv1(f) for f in stack], has_bot=True)
        ds["PixelData"].VR = "OB"
    elif transfer_syntax in ("rle", "jpeg2000"):
        ds.file_meta.TransferSyntaxUID = uids.UID(uids.ExplicitVRLittleEndian)
        ds.PixelData = stack.tobytes()
        ds["PixelData"].VR = "OB" if bits == 8 else "OW"
        arr = stack if frames > 1 else stack[0]
        ts_uid = uids.UID(TRANSFER_SYNTAXES[transfer_syntax])
        ds.compress(ts_uid, arr, generate_instance_uid=False)
    else:
        ds.PixelData = stack.tobytes()
        ds["PixelData"].VR = "OB" if bits == 8 else "OW"
