"""Synthetic fundus datasets: the demo data, test data and benchmark of SALL Desktop.

- :mod:`model_zoo.datasets.synthetic`: ``FundusSpec``, ``render_fundus``, ``sample_specs``;
- :mod:`model_zoo.datasets.benchmark`: ``write_synthetic_dataset`` (SALL-style split on disk);
- :mod:`model_zoo.datasets.camera`: camera profiles, the same eye through another clinic's camera;
- :mod:`model_zoo.datasets.contact_sheet`: the captioned gallery in ``docs/``.

Importing this package loads numpy and OpenCV only (never torch).
"""

from model_zoo.datasets.benchmark import SyntheticSample, write_synthetic_dataset
from model_zoo.datasets.synthetic import (
    DEFECTS,
    LESION_TYPES,
    FundusSpec,
    SyntheticFundus,
    render_fundus,
    sample_specs,
)

__all__ = [
    "DEFECTS",
    "LESION_TYPES",
    "FundusSpec",
    "SyntheticFundus",
    "SyntheticSample",
    "render_fundus",
    "sample_specs",
    "write_synthetic_dataset",
]
