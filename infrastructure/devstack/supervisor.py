"""A small process supervisor: start children in order, restart the ones that die, stop in reverse.

Children run in their own sessions, so a terminal's Ctrl-C reaches only the supervisor, which
then stops them one by one (roles first, servers last). Each child also asks the kernel to
signal it should the supervisor vanish without cleaning up (PR_SET_PDEATHSIG), so a
`kill -9` of the supervisor leaves no orphan behind either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from infrastructure.devstack.servers import ProcessSpec
from infrastructure.log import get_logger

log = get_logger(__name__)

_PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class ChildFailedError(RuntimeError):
    """A child exited or never became ready while starting."""


def _die_with_parent(sig: int) -> Callable[[], None]:
    def preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_file: IO[bytes] | None
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    def __init__(self) -> None:
        self._children: list[_Child] = []

    @property
    def pids(self) -> dict[str, int]:
        return {c.spec.name: c.process.pid for c in self._children}

    def start(self, spec: ProcessSpec, *, ready_timeout: float = 60.0) -> None:
        """Start `spec` and wait until it answers; raise `ChildFailedError` if it does not."""
        child = self._spawn(spec)
        self._children.append(child)
        self._wait_ready(child, ready_timeout)

    def _spawn(self, spec: ProcessSpec, restarts: int = 0) -> _Child:
        spec.prepare()
        log_file = None
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = spec.log_path.open("ab")
        process = subprocess.Popen(
            spec.argv,
            env={**os.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT if log_file else None,
            start_new_session=True,
            user=spec.user,
            preexec_fn=_die_with_parent(spec.stop_signal),  # noqa: PLW1509 - only calls prctl
        )
        log.debug("started", child=spec.name, pid=process.pid)
        return _Child(spec, process, log_file, restarts=restarts)

    def _wait_ready(self, child: _Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not child.spec.ready():
            if child.process.poll() is not None:
                raise ChildFailedError(
                    f"{child.spec.name} exited with status {child.process.returncode} while "
                    f"starting{self._log_hint(child.spec)}"
                )
            if time.monotonic() > deadline:
                raise ChildFailedError(
                    f"{child.spec.name} did not answer within {timeout:.0f} s"
                    f"{self._log_hint(child.spec)}"
                )
            time.sleep(0.1)

    @staticmethod
    def _log_hint(spec: ProcessSpec) -> str:
        return f"; see {spec.log_path}" if spec.log_path else ""

    def check(self) -> None:
        """Restart any child that has exited, with growing back-off. Call it periodically."""
        now = time.monotonic()
        for index, child in enumerate(self._children):
            status = child.process.poll()
            if status is None:
                continue
            if child.restart_at is None:
                delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                child.restart_at = now + delay
                log.error(
                    "child exited; restarting",
                    child=child.spec.name,
                    status=status,
                    restart_in_s=delay,
                )
            elif now >= child.restart_at:
                self._close_log(child)
                self._children[index] = self._spawn(child.spec, restarts=child.restarts + 1)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop children in reverse start order: each gets its stop signal, then SIGKILL."""
        while self._children:
            child = self._children.pop()
            self._stop(child, timeout)

    def _stop(self, child: _Child, timeout: float) -> None:
        process = child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, child.spec.stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing", child=child.spec.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Reap anything the child left in its process group (e.g. HTTP workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        self._close_log(child)
        log.debug("stopped", child=child.spec.name, status=process.returncode)

    @staticmethod
    def _close_log(child: _Child) -> None:
        if child.log_file is not None:
            child.log_file.close()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
