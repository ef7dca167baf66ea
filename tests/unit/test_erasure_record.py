"""The record of erasures outside the database: lines appended survive reading back, the
latest line of an erasure wins, a line cut short by a crash is left out, and any other bad
line stops the reader, naming it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infrastructure.privacy.erasure_record import (
    ErasureRecord,
    ErasureRecordError,
    RecordedErasure,
)


def _erasure(erasure_id: uuid.UUID | None = None, minutes: int = 0) -> RecordedErasure:
    at = datetime(2026, 11, 30, 8, tzinfo=UTC)
    return RecordedErasure(
        erasure_id=erasure_id or uuid.uuid4(),
        tenant_id="acme",
        subject_kind="recipient",
        subject_hash="ab" * 32,
        subject_ref="ab" * 32,
        requested_at=at,
        keys_destroyed_at=at + timedelta(minutes=minutes),
    )


def test_erasures_read_back_in_order_with_the_latest_line_of_each(tmp_path: Path) -> None:
    record = ErasureRecord(tmp_path / "record")
    assert record.erasures() == []
    first, second = _erasure(), _erasure()
    rerun = _erasure(first.erasure_id, minutes=5)
    for erasure in (first, second, rerun):
        record.append(erasure)
    assert record.erasures() == [rerun, second]
    assert record.erasures()[0].subject_name == ("acme", "recipient", b"\xab" * 32)


def test_a_last_line_cut_short_is_left_out_and_any_other_bad_line_is_an_error(
    tmp_path: Path,
) -> None:
    record = ErasureRecord(tmp_path)
    kept = _erasure()
    record.append(kept)
    with record.path.open("ab") as file:
        file.write(b'{"erasure_id": "')
    assert record.erasures() == [kept]
    with record.path.open("ab") as file:
        file.write(b"\n")
    record.append(_erasure())
    with pytest.raises(ErasureRecordError, match="line 2 is not JSON"):
        record.erasures()


def test_an_unwritable_record_refuses_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ErasureRecordError, match="cannot record erasure"):
        ErasureRecord(blocker / "record").append(_erasure())
