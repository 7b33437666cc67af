"""Dataset ids -> image content: stems, extensions, case, duplicates and ambiguity."""

from __future__ import annotations

from sall_desktop.domain.grades import ImageRecord
from sall_desktop.services.adapters import resolve_ids
from sall_desktop.services.adapters.resolve import file_name, file_stem


def sha(n: int) -> str:
    return f"{n:064x}"


IMAGES = [
    ImageRecord(sha(1), "/data/train/10_left.jpeg"),
    ImageRecord(sha(2), "/data/train/10_right.jpeg"),
    ImageRecord(sha(3), "C:\\aptos\\0a4e1a29ffff.png"),
    ImageRecord(sha(4), "/data/idrid/IDRiD_001.jpg"),
    ImageRecord(sha(4), "/data/copy/IDRiD_001.jpg"),  # same content twice: one image
    ImageRecord(sha(5), "/data/a/IDRiD_002.jpg"),
    ImageRecord(sha(6), "/data/b/IDRiD_002.tif"),  # same stem, other content: ambiguous
    ImageRecord(sha(7), "/m2/20051020_43808_0100_PP.png"),
    ImageRecord(sha(8), "/data/Mixed_Case.JPG"),
]


def test_path_helpers_handle_both_separators() -> None:
    assert file_name("C:\\a\\b.png") == "b.png"
    assert file_stem("/x/a.b.jpeg") == "a.b"
    assert file_stem(".hidden") == ".hidden"


def test_ids_without_extension_match_by_stem() -> None:
    result = resolve_ids(["10_left", "10_right", "0a4e1a29ffff", "IDRiD_001"], IMAGES)
    assert result.matched == {
        "10_left": sha(1),
        "10_right": sha(2),
        "0a4e1a29ffff": sha(3),
        "IDRiD_001": sha(4),
    }
    assert result.unmatched == () and result.ambiguous == {}


def test_same_stem_with_different_content_is_ambiguous_and_unknown_is_unmatched() -> None:
    result = resolve_ids(["IDRiD_002", "99_left", "99_left"], IMAGES)
    assert result.ambiguous == {"IDRiD_002": (sha(5), sha(6))}
    assert result.unmatched == ("99_left",)
    assert result.matched == {}


def test_ids_with_extension_match_the_full_name() -> None:
    result = resolve_ids(
        ["20051020_43808_0100_PP.png", "20051020_43808_0100_PP"], IMAGES, with_extension=True
    )
    assert result.matched == {"20051020_43808_0100_PP.png": sha(7)}
    assert result.unmatched == ("20051020_43808_0100_PP",)


def test_case_insensitive_fallback_and_ids_carrying_an_extension() -> None:
    result = resolve_ids(["mixed_case", "10_left.jpeg", "train/10_right"], IMAGES)
    assert result.matched == {
        "mixed_case": sha(8),
        "10_left.jpeg": sha(1),
        "train/10_right": sha(2),
    }
