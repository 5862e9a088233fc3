"""Read `annotations.csv`: a header naming the columns, then one object per row, checked row by row."""

from __future__ import annotations

import csv
from pathlib import Path

from multitask.datasets.annotated import AnnotatedObject, number
from multitask.errors import DataError
from multitask.records import SPLITS

CSV_COLUMNS = ("filename", "label", "xmin", "ymin", "xmax", "ymax")


def read_csv(path: Path) -> tuple[dict[str, list[AnnotatedObject]], dict[str, str]]:
    objects: dict[str, list[AnnotatedObject]] = {}
    splits: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            fieldnames = reader.fieldnames
        except csv.Error as exc:
            raise DataError(f"{path.name} row 1: not readable as CSV ({exc})") from None
        if fieldnames is None:
            raise DataError(f"{path} is empty: expected a header {','.join(CSV_COLUMNS)}[,split]")
        header = [name.strip() for name in fieldnames]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                            f"{','.join(CSV_COLUMNS)}[,split], got {','.join(header)}")
        reader.fieldnames = header
        for line, row in _rows(reader, path):
            where = f"{path.name} row {line}"
            filename = (row["filename"] or "").strip()
            label = (row["label"] or "").strip()
            if not filename or not label:
                raise DataError(f"{where}: filename and label must not be empty")
            xmin, ymin, xmax, ymax = (number(row[c], c, where) for c in ("xmin", "ymin", "xmax", "ymax"))
            objects.setdefault(filename, []).append(AnnotatedObject(label, (xmin, ymin, xmax, ymax), where))
            if "split" in header:
                split = (row["split"] or "").strip()
                if split not in SPLITS:
                    raise DataError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
                splits[filename] = split
    if not objects:
        raise DataError(f"{path} has a header but no rows")
    return objects, splits


def _rows(reader: csv.DictReader, path: Path):
    """(line, row) of each data row; a malformed row (a field over the csv module's size limit, a
    NUL byte) is one error naming its line."""
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path.name} row {reader.line_num + 1}: not readable as CSV ({exc})") from None
        yield reader.line_num, row
