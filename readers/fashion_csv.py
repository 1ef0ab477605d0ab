"""Images in the Fashion-MNIST CSV form: a label and the pixel values per row."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch

from hpsearch.data import RawSplit
from hpsearch.errors import UsageError

_INT_CELL = re.compile(r"[ \t\r]*[+-]?[0-9]+[ \t\r]*\Z")  # what numpy's parser takes as an integer


def read_csv(
    path: Path, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, classes: list[str] | None = None
) -> RawSplit:
    """Images from a CSV in the Fashion-MNIST CSV form: each row is the label (0..num_classes-1)
    then prod(image_shape) pixel values (0..255), optionally under a header row (a first row
    whose first cell is not an integer, e.g. "label,pixel1,...").

    Bad input raises UsageError naming the file and the first bad 1-based line. Blank lines
    are skipped; ``classes`` defaults to "0".."num_classes-1".
    """
    n_cols = 1 + int(np.prod(image_shape))
    form = f"each row must be a label 0..{num_classes - 1} and then {n_cols - 1} pixel values 0..255"
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first cell.
        text = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UsageError(f"{path}: no such file: pass the path of a CSV where {form}") from None
    first, _, rest = text.partition("\n")
    header = bool(first.strip()) and not _INT_CELL.match(first.split(",", 1)[0])
    body, first_line = (rest, 2) if header else (text, 1)
    if not body.strip():
        raise UsageError(f"{path} holds no data rows: {form}")
    try:
        # Fast path: numpy's C parser, ~60,000 rows a second or more. It rejects cells
        # that are not 0..255, rows of unequal length, and text.
        rows = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.uint8, comments=None, ndmin=2)
        ok = rows.shape[1] == n_cols and bool((rows[:, 0] < num_classes).all())
    except ValueError:
        ok = False
    if not ok:
        # numpy's messages neither count lines the way an editor does nor say what to fix.
        rows = _csv_rows_line_by_line(path, body.splitlines(), first_line, n_cols, num_classes, form)
    images = torch.from_numpy(rows[:, 1:].astype(np.uint8)).reshape(-1, *image_shape)
    labels = torch.from_numpy(rows[:, 0].astype(np.int64))
    return RawSplit(images=images, labels=labels, classes=classes or [str(c) for c in range(num_classes)])


def _csv_rows_line_by_line(path, lines, first_line: int, n_cols: int, num_classes: int, form: str) -> np.ndarray:
    """The careful parse: raises UsageError at the first bad line, else returns the rows."""
    rows = []
    for lineno, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        cells = line.split(",")
        if len(cells) != n_cols:
            raise UsageError(
                f"{where} has {len(cells)} values, expected {n_cols} (label + {n_cols - 1} pixels): {form}"
            )
        try:
            values = np.fromstring(line, dtype=np.int64, sep=",")
        except ValueError:
            values = None
        if values is None or len(values) != n_cols:
            # _INT_CELL accepts what numpy does, so some cell fails it; 1 only guards the lookup.
            column = next((c for c, v in enumerate(cells, 1) if not _INT_CELL.match(v)), 1)
            raise UsageError(f"{where}, column {column}: {cells[column - 1][:20]!r} is not a whole number: {form}")
        if not 0 <= values[0] < num_classes:
            raise UsageError(f"{where}: label {values[0]} is outside 0..{num_classes - 1}: {form}")
        bad = np.flatnonzero((values[1:] < 0) | (values[1:] > 255))
        if len(bad):
            column = int(bad[0]) + 2
            raise UsageError(f"{where}, column {column}: pixel value {values[column - 1]} is outside 0..255: {form}")
        rows.append(values)
    return np.stack(rows)
