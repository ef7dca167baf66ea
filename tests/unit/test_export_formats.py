"""Export formats: a JSON array streamed from NDJSON whatever the chunking, and Parquet files
that are the same bytes for the same rows."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.exports.formats import json_array, parquet

ROWS = st.lists(
    st.dictionaries(st.text(max_size=5), st.text(max_size=20) | st.integers(), max_size=3),
    max_size=20,
)


@given(rows=ROWS, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_a_json_array_of_ndjson_lines_is_the_same_values_however_the_stream_is_cut(
    rows: list[dict[str, object]], cuts: list[int]
) -> None:
    ndjson = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    points = sorted({c for c in cuts if c < len(ndjson)} | {0, len(ndjson)})
    chunks = [ndjson[a:b] for a, b in itertools.pairwise(points)]
    assert json.loads(b"".join(json_array(chunks))) == rows


SCHEMA = pa.schema(
    [("id", pa.string()), ("count", pa.int64()), ("at", pa.timestamp("us", tz="UTC"))]
)


def _rows(n: int) -> list[tuple[str, int, datetime]]:
    return [(f"n-{i}", i, datetime(2026, 1, 1, tzinfo=UTC)) for i in range(n)]


def test_parquet_is_the_same_bytes_for_the_same_rows_and_reads_back() -> None:
    rows = _rows(1234)
    batches = [rows[i : i + 500] for i in range(0, len(rows), 500)]
    first = b"".join(parquet(SCHEMA, batches))
    again = b"".join(parquet(SCHEMA, batches))
    assert first == again
    table = pq.read_table(io.BytesIO(first))
    assert table.num_rows == 1234
    assert table.column("count").to_pylist() == list(range(1234))


def test_an_empty_parquet_export_is_a_valid_file_with_the_columns() -> None:
    table = pq.read_table(io.BytesIO(b"".join(parquet(SCHEMA, []))))
    assert table.num_rows == 0
    assert table.schema.names == ["id", "count", "at"]
