"""Writer child of tests/crash/test_kill_writer.py: grades at random until it is killed.

Usage: python kill_writer_child.py DB SEED

Prints "ready" once imported, waits for a line on stdin, opens the store, prints "open", then
commits random gradings and retractions, printing one JSON line per commit *after* the commit
returned: what the parent must find, byte for byte, after the kill.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource, UngradableReason
from sall_desktop.store import StoreWriteError, open_store

IMAGES = [hashlib.sha256(f"image-{i}".encode()).hexdigest() for i in range(40)]
GRADERS = ["Dr A", "Dr B", "Dr Ç"]
NOTE_CHARS = "abc xyz\n\t0123\u00e9\u00fc\u2603\U0001f441'\";--"


def random_grading(rng: random.Random) -> Grading:
    gradable = rng.random() > 0.15
    return Grading(
        image_sha256=rng.choice(IMAGES),
        grader=rng.choice(GRADERS),
        dr_grade=rng.choice([None, 0, 1, 2, 3, 4]) if gradable else None,
        amd_grade=rng.choice([None, 0, 1, 2, 3]) if gradable else None,
        gradable=gradable,
        ungradable_reason=None if gradable else rng.choice(list(UngradableReason)),
        dme=rng.choice([None, 0, 1, 2]) if gradable else None,
        notes="".join(rng.choice(NOTE_CHARS) for _ in range(rng.randrange(0, 40))),
        model_version=rng.choice([None, "m" * 64, "model-2"]),
        role=rng.choice(list(GraderRole)),
        source=rng.choice(list(GradingSource)),
    )


def expected_row(g: Grading) -> list[object]:
    """The gradings row the parent must read back (see test_kill_writer.ROW_SQL)."""
    return [
        g.image_sha256, g.grader, 0, g.role.value, g.source.value, int(g.gradable),
        g.ungradable_reason.value if g.ungradable_reason else None, g.dr_grade, g.amd_grade,
        g.dme, g.notes.encode("utf-8").hex().upper(), g.model_version, g.created_at,
    ]  # fmt: skip


def main() -> None:
    db, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    print("ready", flush=True)
    sys.stdin.readline()
    store = open_store(db, app_version="crash-test", verify_audit=False)
    if store.read_only:
        print(json.dumps({"error": store.read_only_reason}), flush=True)
        return
    print("open", flush=True)
    while True:
        if rng.random() < 0.15:
            image, grader = rng.choice(IMAGES), rng.choice(GRADERS)
            try:
                row_id = store.retract_grading(image, grader, reason="crash-test undo")
            except StoreWriteError:
                continue  # nothing to retract: nothing committed, nothing acknowledged
            print(json.dumps({"id": row_id, "retract": [image, grader]}), flush=True)
        else:
            g = random_grading(rng)
            row_id = store.add_grading(g, reason=rng.choice(["", "second look"]))
            print(json.dumps({"id": row_id, "row": expected_row(g)}), flush=True)


if __name__ == "__main__":
    main()
