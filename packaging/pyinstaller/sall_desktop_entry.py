"""Frozen entry point of the windowed ``sall-desktop`` executable (same ``main`` as the script)."""

import multiprocessing

# First statement: the decode pool and DataLoader workers re-execute this executable, and
# freeze_support() turns those executions into workers instead of second windows.
multiprocessing.freeze_support()

import sys  # noqa: E402

from sall_desktop.__main__ import main  # noqa: E402

sys.exit(main())
