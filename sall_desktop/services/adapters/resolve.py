"""Resolve dataset ids (``10_left``, ``IDRiD_001``, ``x.png``) to image content (sha256).

Ids are resolved once, at import (docs/grading-conventions.md, Import rules); afterwards labels
live on the content hash, so renaming or moving the files never detaches them (R6).

Matching rules, as the datasets themselves do it:

- ids without an extension (EyePACS, APTOS, IDRiD) match a file whose *stem* equals the id
  (``10_left`` -> ``train/10_left.jpeg``); an id that does end in an extension is also tried
  by its own stem;
- ids with an extension (Messidor-2) match the full file name;
- an exact (case-sensitive) match wins; otherwise a case-insensitive match is used, because
  dataset ids and file names often differ in case after copying between file systems;
- several files with the id but the *same* content are one image (duplicates); several with
  *different* content are ambiguous and the id is not resolved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sall_desktop.domain.grades import ImageRecord

_SEPARATORS = re.compile(r"[\\/]")


def file_name(path: str) -> str:
    """Last component of a POSIX or Windows path (the catalogue may hold either)."""
    return _SEPARATORS.split(path)[-1]


def file_stem(path: str) -> str:
    """File name without its last suffix (``a.b.jpeg`` -> ``a.b``; ``.hidden`` stays)."""
    name = file_name(path)
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


@dataclass(frozen=True, slots=True)
class IdResolution:
    """Outcome of resolving ids.

    Attributes:
        matched: id -> sha256 for every id that names exactly one image content.
        unmatched: ids with no image file, in input order.
        ambiguous: id -> the distinct sha256 values of the different images it could mean.
    """

    matched: dict[str, str]
    unmatched: tuple[str, ...]
    ambiguous: dict[str, tuple[str, ...]]


def _index(
    images: Sequence[ImageRecord], *, by_stem: bool
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    exact: dict[str, set[str]] = {}
    folded: dict[str, set[str]] = {}
    for image in images:
        key = file_stem(image.path) if by_stem else file_name(image.path)
        exact.setdefault(key, set()).add(image.sha256)
        folded.setdefault(key.casefold(), set()).add(image.sha256)
    return exact, folded


def resolve_ids(
    ids: Iterable[str], images: Sequence[ImageRecord], *, with_extension: bool = False
) -> IdResolution:
    """Map dataset ids to image sha256 values (see the module docstring for the rules).

    Args:
        ids: ids as written in the label file (duplicates are fine).
        images: the catalogue's records (current paths).
        with_extension: the ids carry the file extension (Messidor-2); otherwise they are
            matched by stem.

    Returns:
        The matched, unmatched and ambiguous ids.
    """
    exact, folded = _index(images, by_stem=not with_extension)
    matched: dict[str, str] = {}
    unmatched: list[str] = []
    ambiguous: dict[str, tuple[str, ...]] = {}
    # Every id is looked at once: a set, not the unmatched list, answers "seen before?" (a list
    # made a file of 40,000 unmatched ids take half a minute).
    seen: set[str] = set()
    for raw in ids:
        image_id = raw.strip()
        if image_id in seen:
            continue
        seen.add(image_id)
        # An id given with a folder (someone's export) still names its file; an extension-less
        # format's id that nevertheless ends in an extension is tried by its stem as well.
        key = file_name(image_id)
        candidates = exact.get(key) or folded.get(key.casefold()) or set()
        if not candidates and not with_extension:
            stem = file_stem(key)
            candidates = exact.get(stem) or folded.get(stem.casefold()) or set()
        if not candidates:
            unmatched.append(image_id)
        elif len(candidates) > 1:
            ambiguous[image_id] = tuple(sorted(candidates))
        else:
            matched[image_id] = next(iter(candidates))
    return IdResolution(matched=matched, unmatched=tuple(unmatched), ambiguous=ambiguous)
