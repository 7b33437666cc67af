"""Label-file formats by name: ``get_adapter("eyepacs").read(path)`` / ``.write(records)``.

Importing this package registers every format (each module applies ``@register_adapter``):
``canonical``, ``eyepacs``, ``aptos``, ``idrid``, ``messidor2``, ``imagefolder`` (export only)
and ``manifest``.
"""

from __future__ import annotations

from sall_desktop.services.adapters import (  # noqa: F401  (imported to register the formats)
    aptos,
    canonical,
    eyepacs,
    idrid,
    imagefolder,
    manifest,
    messidor2,
)
from sall_desktop.services.adapters.base import (
    Adapter,
    DmeScale,
    ExportItem,
    ExportOptions,
    ExportResult,
    LabelFileError,
    LabelRecord,
    ParsedFile,
    RowIssue,
    adapter_names,
    get_adapter,
    register_adapter,
)
from sall_desktop.services.adapters.resolve import IdResolution, resolve_ids

__all__ = [
    "Adapter",
    "DmeScale",
    "ExportItem",
    "ExportOptions",
    "ExportResult",
    "IdResolution",
    "LabelFileError",
    "LabelRecord",
    "ParsedFile",
    "RowIssue",
    "adapter_names",
    "get_adapter",
    "register_adapter",
    "resolve_ids",
]
