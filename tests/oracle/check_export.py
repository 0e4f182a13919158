#!/usr/bin/env python3
"""Reads a `forexgpt features --export` pair (CSV and Parquet of the same request) with
independent readers (Python's csv module and pyarrow) and checks that they hold the same
table: column names, UTC times, every number bit for bit, empty targets as nulls, split labels.

    forexgpt features --export /tmp/f.csv && forexgpt features --export /tmp/f.parquet
    python3 tests/oracle/check_export.py /tmp/f.csv /tmp/f.parquet

Needs pyarrow (26.0.1 when this was last run; see the session notes).
"""

import csv
import datetime as dt
import math
import sys

import pyarrow.parquet as pq


def main(csv_path: str, parquet_path: str) -> None:
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    table = pq.read_table(parquet_path)
    assert table.column_names == header, (table.column_names[:5], header[:5])
    assert table.num_rows == len(body), (table.num_rows, len(body))
    time = table.column("time")
    assert str(time.type) == "timestamp[ms, tz=UTC]", time.type
    columns = {name: table.column(name).to_pylist() for name in header}
    for r, row in enumerate(body):
        stamp = columns["time"][r]
        assert stamp.strftime("%Y-%m-%dT%H:%M:%SZ") == row[0], (r, stamp, row[0])
        assert stamp.tzinfo is not None and stamp.utcoffset() == dt.timedelta(0)
        for j, name in enumerate(header[1:-1], start=1):
            value, cell = columns[name][r], row[j]
            if cell == "":
                assert value is None, (r, name, value)
            else:
                assert value is not None and not math.isnan(value), (r, name)
                assert float(cell) == value, (r, name, cell, value)
        assert columns["split"][r] == row[-1], (r, columns["split"][r], row[-1])
    print(f"ok: {len(body)} rows × {len(header)} columns agree ({parquet_path})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
