"""``python -m training`` and the ``sall-train`` console script (also under torchrun)."""

from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    """Entry point: ``freeze_support()`` first, then the command line."""
    # First statement: in a frozen bundle, DataLoader workers re-execute this executable, and
    # freeze_support() turns those executions into workers instead of second trainers.
    multiprocessing.freeze_support()
    import os

    from model_zoo.io.limits import DEFAULT_MAX_PIXELS

    # OpenCV reads this once, at its first import: refuse decompression bombs (R15).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))
    from training import cli

    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
