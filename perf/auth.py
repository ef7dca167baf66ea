"""`python -m perf auth`: throughput of a protected GET against the same GET unprotected.

Both routes run the whole stack (request ids, guard, security headers); the protected one
also verifies a JWT and checks the revocation denylist, which must cost no I/O. Measured
twice: with rate limiting off (the headline: the cost of authentication alone) and on (each
request, protected or not, pays one Redis round trip). Runs alternate open and protected to
spread the machine's noise evenly.
"""

from __future__ import annotations

from typing import Any

import msgspec

from perf.harness import Load, http_process, machine, median_load, sender_token, servers, wrk

TARGET_RATIO = 0.85
ROUNDS = 3
UNLIMITED = "100000000/1s"


def _measure(url: str, token: str, seconds: int) -> tuple[Load, Load]:
    headers = {"Authorization": f"Bearer {token}"}
    wrk(f"{url}/bench/protected", seconds=1, headers=headers)  # warm both paths up
    wrk(f"{url}/bench/open", seconds=1)
    opened, protected = [], []
    for _ in range(ROUNDS):
        opened.append(wrk(f"{url}/bench/open", seconds=seconds))
        protected.append(wrk(f"{url}/bench/protected", seconds=seconds, headers=headers))
    return median_load(opened), median_load(protected)


def run(quick: bool) -> dict[str, Any]:
    seconds = 3 if quick else 10
    variants: dict[str, Any] = {}
    with servers() as settings:
        token = sender_token(settings)
        for name, limited in (("rate_limited", True), ("no_rate_limit", False)):
            variant = msgspec.structs.replace(
                settings,
                rate_limit_enabled=limited,
                rate_limit_anonymous=UNLIMITED,
                rate_limit_authenticated=UNLIMITED,
            )
            with http_process(variant, "perf.auth_app:from_environment") as url:
                opened, protected = _measure(url, token, seconds)
            if opened.non_2xx or protected.non_2xx:
                raise RuntimeError(f"{name}: non-2xx answers during the run")
            variants[name] = {
                "open": opened.__dict__,
                "protected": protected.__dict__,
                "ratio": round(protected.requests_per_s / opened.requests_per_s, 3),
            }
    # The headline is the cost of authentication alone. With rate limiting on, both routes
    # wait on the same Redis round trip, which hides most of the difference.
    main = variants["no_rate_limit"]
    return {
        "scenario": "auth",
        "value": main["protected"]["requests_per_s"],
        "unit": "req/s",
        "baseline": main["open"]["requests_per_s"],
        "ratio": main["ratio"],
        "target_ratio": TARGET_RATIO,
        "variants": variants,
        "seconds_per_run": seconds,
        "rounds": ROUNDS,
        "machine": machine(),
    }
