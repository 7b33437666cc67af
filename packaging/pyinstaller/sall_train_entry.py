"""Frozen entry point of the console ``sall-train`` executable (same ``main`` as the script)."""

import multiprocessing

# First statement: DataLoader workers re-execute this executable; freeze_support() turns those
# executions into workers instead of second trainers.
multiprocessing.freeze_support()

import sys  # noqa: E402

from training.__main__ import main  # noqa: E402

sys.exit(main())
