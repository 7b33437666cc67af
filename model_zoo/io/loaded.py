"""Values returned by :func:`model_zoo.io.read_image`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageMeta:
    """What the loader learnt about one image file.

    Attributes:
        sha256: Hex sha256 of the file bytes (the image's identity).
        width: Full-resolution width in pixels, as stored (not reduced by ``reduce``).
        height: Full-resolution height in pixels.
        file_format: ``"jpeg"``, ``"png"``, ``"tiff"``, ``"bmp"`` or ``"dicom"`` (by content,
            never by suffix).
        bit_depth: Bits per sample in the source (8, 16; DICOM: Bits Stored).
        laterality: ``"R"``, ``"L"``, ``"B"`` or ``""`` (unknown).
        laterality_source: ``"dicom_tag"``, ``"filename_rule"`` or ``""``.
        patient_id: Patient ID from DICOM (0010,0020) or a file-name rule, else ``""``.
        patient_id_source: ``"dicom_tag"``, ``"filename_rule"`` or ``""``.
        study_date: DICOM Study Date as ``YYYYMMDD``, else ``""``.
        modality: DICOM Modality (``"OP"``, ``"XC"``, ``"OT"``...), else ``""``.
        sop_class_uid: DICOM SOP Class UID, else ``""``.
        sop_instance_uid: DICOM SOP Instance UID, else ``""``.
        transfer_syntax: DICOM Transfer Syntax UID as stored in the file, else ``""``.
        frames: Number of frames in the file; the pixels are always frame 1.
        burned_in_annotation: DICOM Burned In Annotation (``"YES"``/``"NO"``), else ``""``.
    """

    sha256: str
    width: int
    height: int
    file_format: str
    bit_depth: int = 8
    laterality: str = ""
    laterality_source: str = ""
    patient_id: str = ""
    patient_id_source: str = ""
    study_date: str = ""
    modality: str = ""
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    transfer_syntax: str = ""
    frames: int = 1
    burned_in_annotation: str = ""


@dataclass(frozen=True)
class LoadedImage:
    """Decoded pixels plus metadata.

    Attributes:
        rgb: H×W×3 ``uint8`` RGB, C-contiguous. With ``reduce=n`` H and W are
            ``ceil(height / n)`` and ``ceil(width / n)``.
        meta: The file's :class:`ImageMeta`.
    """

    rgb: np.ndarray
    meta: ImageMeta
