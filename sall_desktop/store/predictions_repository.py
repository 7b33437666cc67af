"""Model outputs: append-only predictions, read per folder through the indexes.

A mixin of :class:`~sall_desktop.store.label_queries.LabelQueries`; the SQL is the dialect both
backends share (ADR 0013).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sall_desktop.domain.predictions import Prediction
from sall_desktop.store.rows import PREDICTION_SELECT, image_row_id, in_parts, prediction_from_row
from sall_desktop.store.sql import SqlConnection
from sall_desktop.store.transactions import Transactions


class PredictionsRepositoryMixin:
    """Append and read predictions (see :class:`~sall_desktop.store.repository.LabelRepository`)."""

    def add_prediction(self: Transactions, prediction: Prediction) -> int:
        """Append one prediction; return its row id after commit."""
        with self._write("the model output") as conn:
            return _insert_prediction(conn, prediction)

    def add_predictions(self: Transactions, predictions: Sequence[Prediction]) -> int:
        """Append many predictions in one transaction; return how many were written."""
        with self._write("the model outputs") as conn:
            for prediction in predictions:
                _insert_prediction(conn, prediction)
        return len(predictions)

    def latest_prediction(
        self: Transactions, image_sha256: str, model_id: str | None = None
    ) -> Prediction | None:
        """The most recent prediction for the image (of ``model_id`` if given), or None."""
        sql = f"{PREDICTION_SELECT} WHERE i.sha256 = ?"
        params: tuple[str, ...] = (image_sha256,)
        if model_id is not None:
            sql, params = sql + " AND p.model_id = ?", (image_sha256, model_id)
        with self._read("the model output") as conn:
            row = conn.execute(sql + " ORDER BY p.id DESC LIMIT 1", params).fetchone()
            return None if row is None else prediction_from_row(row)

    def predictions(self: Transactions, *, model_id: str | None = None) -> list[Prediction]:
        """Every stored prediction (of ``model_id`` if given), oldest first."""
        with self._read("the model outputs") as conn:
            if model_id is None:
                rows = conn.execute(f"{PREDICTION_SELECT} ORDER BY p.id").fetchall()
            else:
                rows = conn.execute(
                    f"{PREDICTION_SELECT} WHERE p.model_id = ? ORDER BY p.id", (model_id,)
                ).fetchall()
            return [prediction_from_row(r) for r in rows]

    def latest_predictions(
        self: Transactions, model_id: str, image_sha256s: Iterable[str]
    ) -> dict[str, Prediction]:
        """The newest prediction of ``model_id`` for each of ``image_sha256s`` that has one.

        Through the indexes, like :meth:`graded_images`: the window asks for the open folder's
        images, not for every prediction the model ever made, so the cost follows the folder,
        not the store (see docs/benchmarks.md, "Figures formerly in docstrings").
        """
        sql = PREDICTION_SELECT + " WHERE i.sha256 IN ({marks}) AND p.model_id = ? ORDER BY p.id"
        latest: dict[str, Prediction] = {}
        for row in _rows_of_images(self, sql, image_sha256s, model_id):
            latest[row[0]] = prediction_from_row(row)  # oldest first: the newest stays
        return latest

    def graded_images(self: Transactions, model_id: str, image_sha256s: Iterable[str]) -> set[str]:
        """Those of ``image_sha256s`` that ``model_id`` has a prediction for.

        Looked up image by image through the indexes, so the cost follows the folder asked
        about, not the store: reading every prediction of the model instead (to skip graded
        images when a grading run starts) grows with every prediction ever stored (see
        docs/benchmarks.md, "Figures formerly in docstrings").
        """
        sql = (
            "SELECT i.sha256 FROM images AS i WHERE i.sha256 IN ({marks}) AND EXISTS "
            "(SELECT 1 FROM predictions AS p WHERE p.image_id = i.id AND p.model_id = ?)"
        )
        return {sha256 for (sha256,) in _rows_of_images(self, sql, image_sha256s, model_id)}


def _insert_prediction(conn: SqlConnection, prediction: Prediction) -> int:
    image_id = image_row_id(conn, prediction.image_sha256, create=True)
    probabilities = {head: list(p) for head, p in prediction.probabilities.items()}
    cur = conn.execute(
        "INSERT INTO predictions (image_id, model_id, probabilities, gradable_probability, "
        "created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        (
            image_id,
            prediction.model_id,
            json.dumps(probabilities, sort_keys=True),
            prediction.gradable_probability,
            prediction.created_at,
        ),
    )
    return int(cur.fetchone()[0])


def _rows_of_images(
    store: Transactions, sql: str, image_sha256s: Iterable[str], model_id: str
) -> list[Any]:
    """The rows ``sql`` gives for ``image_sha256s`` (its ``{marks}``) and ``model_id`` (its
    last parameter), asked :data:`~sall_desktop.store.rows.IN_VALUES` images at a time;
    an image asked twice is asked once."""
    rows: list[Any] = []
    with store._read("the model outputs") as conn:
        for marks, part in in_parts(image_sha256s):
            rows.extend(conn.execute(sql.format(marks=marks), (*part, model_id)))
    return rows
