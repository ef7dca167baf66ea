"""Comparing a live read model with a replay of the log: order-independent digests and the
report `herald projections verify` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql


@dataclass
class Digest:
    rows: int
    digest: int

    def __str__(self) -> str:
        return f"{self.rows} rows, digest {self.digest:x}"


@dataclass
class Comparison:
    name: str
    live: Digest | None
    replayed: Digest | None
    differing: list[str] = field(default_factory=list)  # a few keys that differ

    @property
    def equal(self) -> bool:
        return self.live is None or (self.live == self.replayed and not self.differing)


@dataclass
class VerifyReport:
    position: int
    changed_since: int  # rows left out: they changed after `position`
    comparisons: list[Comparison]
    # Rows kept from events that retention has since removed from the log: a replay cannot
    # make them, so they are left out of the comparison.
    outlived: int = 0

    @property
    def ok(self) -> bool:
        return all(c.equal for c in self.comparisons)


def table_digest(
    conn: psycopg.Connection[Any], schema: str, query: str, params: tuple[Any, ...] = ()
) -> Digest:
    """Row count and the sum of each row's md5 over `query`, whose `{schema}` names where the
    table is: the same rows in any order give the same digest."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint), 0)"
            " FROM ({}) t"
        ).format(sql.SQL(query).format(schema=sql.Identifier(schema))),
        params,
    ).fetchone()
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    return Digest(int(row[0]), int(row[1]))
