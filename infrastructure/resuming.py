"""Roles outlive their servers: a loop that loses PostgreSQL, Redis or the broker starts
again in the same process, from the positions it had stored, until the server answers.

Every loop that reads and writes with stored positions is safe to start again: what it did
after its last stored position is done again, and a projection applies an event at most once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import redis
from confluent_kafka import KafkaException
from psycopg_pool import PoolTimeout

from infrastructure.log import get_logger

log = get_logger(__name__)

# A server that went away: anything else is a bug, and ends the process for its supervisor.
LOST_SERVER: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    redis.ConnectionError,
    redis.TimeoutError,
    # A broker that restarted has forgotten the consumer group: a commit is refused
    # (UNKNOWN_MEMBER_ID) until a new consumer joins.
    KafkaException,
)
FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 5.0
# A loop that ran this long before failing had got going: its next wait starts short again.
HEALTHY_S = 10.0

Loop = Callable[[threading.Event], None]


def resuming(name: str, run: Loop) -> Loop:
    """`run`, started again after a lost server, with growing waits between attempts,
    until `stop` is set or it returns."""

    def loop(stop: threading.Event) -> None:
        wait = FIRST_WAIT_S
        while not stop.is_set():
            began = time.monotonic()
            try:
                run(stop)
            except LOST_SERVER as exc:
                if time.monotonic() - began > HEALTHY_S:
                    wait = FIRST_WAIT_S
                log.warning(
                    "server lost; resuming", loop=name, error=type(exc).__name__, retry_in_s=wait
                )
            else:
                return
            stop.wait(wait)
            wait = min(wait * 2, LONGEST_WAIT_S)

    return loop
