"""Each provider as operators see it: its mode (live, or the sandbox simulator) and its
circuit breaker's state and call counts, shared by every dispatcher through Redis."""

from __future__ import annotations

from typing import Any

import redis.asyncio
import redis.exceptions

from infrastructure.providers.protection import breaker_states
from infrastructure.providers.sandbox import provider_modes
from infrastructure.settings import Settings


class ProviderStatus:
    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self._client = client
        self._namespace = settings.namespace
        self.modes = provider_modes(settings)  # known without asking Redis

    async def states(self) -> dict[str, dict[str, Any]]:
        """Per provider: `mode`, and its breaker's `state` and counts (see breaker_states);
        the state is "unknown" while Redis is out of reach."""
        try:
            states = await breaker_states(self._client, self._namespace, list(self.modes))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            states = {name: {"state": "unknown"} for name in self.modes}
        for name, mode in self.modes.items():
            states[name]["mode"] = mode
        return states

    async def circuits(self) -> dict[str, str]:
        """Per provider: "closed", "open" or "half_open"."""
        return {name: str(state["state"]) for name, state in (await self.states()).items()}
