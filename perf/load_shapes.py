"""The five load scenarios' shapes, the traffic mix and the seed's thresholds, as data.

The locustfile (run by locust in its own process) and the harness both read this module;
it imports nothing of locust's, so the harness never has gevent patch it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Each simulated user runs this many tasks per second, whatever the server's latency, so the
# offered load is users x this: a slow server shows up as latency, not as a lower demand.
TASKS_PER_USER_S = 2.0

# The seed's k6 thresholds, checked on all requests together.
P95_MS = 100.0
P99_MS = 500.0
MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Stage:
    until_s: int  # from the start of the run
    users: int


@dataclass(frozen=True)
class Shape:
    description: str
    stages: tuple[Stage, ...]

    @property
    def seconds(self) -> int:
        return self.stages[-1].until_s

    @property
    def peak_users(self) -> int:
        return max(s.users for s in self.stages)

    def users_at(self, elapsed_s: float) -> int | None:
        """How many users should run `elapsed_s` into the run; None once it is over."""
        for stage in self.stages:
            if elapsed_s < stage.until_s:
                return stage.users
        return None


def _steady(users: int, seconds: int) -> tuple[Stage, ...]:
    return (Stage(seconds, users),)


# User counts fit one machine running every role, the simulator and locust on 2 cores (see
# docs/performance.md): "load" is what that machine sustains within the thresholds, and
# "stress" steps past it to show where they break.
SHAPES: dict[str, Shape] = {
    "smoke": Shape("a handful of users: does every path work at all", _steady(4, 60)),
    "load": Shape(
        "the expected peak, reached in a minute and held for five",
        (Stage(30, 3), Stage(60, 6), Stage(360, 6), Stage(390, 3)),
    ),
    "stress": Shape(
        "steps past the expected peak, to find where the thresholds break",
        (Stage(90, 5), Stage(180, 10), Stage(270, 20), Stage(360, 30), Stage(450, 40)),
    ),
    "spike": Shape(
        "a quiet minute, a sudden sixfold jump held for a minute, then quiet again",
        (Stage(60, 3), Stage(120, 18), Stage(180, 3)),
    ),
    "soak": Shape("the expected peak held for 30 minutes: memory must stay flat", _steady(6, 1800)),
}

QUICK: dict[str, Shape] = {
    "smoke": Shape(SHAPES["smoke"].description, _steady(3, 20)),
    "load": Shape(SHAPES["load"].description, (Stage(10, 3), Stage(50, 6))),
    "stress": Shape(
        SHAPES["stress"].description,
        (Stage(20, 5), Stage(40, 10), Stage(60, 20), Stage(80, 30), Stage(100, 40)),
    ),
    "spike": Shape(SHAPES["spike"].description, (Stage(15, 3), Stage(35, 18), Stage(50, 3))),
    "soak": Shape(SHAPES["soak"].description, _steady(6, 120)),
}


def shape_named(name: str, quick: bool, minutes: int | None = None) -> Shape:
    """The scenario's shape; `minutes` holds the soak's users that long instead."""
    shape = (QUICK if quick else SHAPES)[name]
    if minutes is None:
        return shape
    return Shape(f"the expected peak held for {minutes} minutes", _steady(6, minutes * 60))


# What the traffic is made of: each request kind's weight, out of 100. One simulated user
# sends every kind (as a client service, an admin or a provider, by the kind), so the mix
# holds at any user count; each user also sends each kind once when it starts.
MIX: dict[str, int] = {
    "POST /notifications": 32,
    "POST /notifications/batch": 3,
    "GET /notifications/{id}": 16,
    "GET /notifications/{id} Min-Position": 10,
    "GET /notifications": 8,
    "GET /recipients/{recipient}/inbox": 11,
    "GET /admin/notifications": 5,
    "GET /admin/queue/stats": 3,
    "GET /admin/dashboard": 2,
    "POST /webhooks/twilio": 10,
}
BATCH_SIZE = 10
