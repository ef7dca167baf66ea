"""`Settings`: every area's fields in one typed, frozen object, checked as a whole.

msgspec Structs take one base each, so the areas stack: service, access, providers,
dispatch, pipeline. Each area module declares its fields, their documentation and its own checks.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec

from infrastructure.settings.pipeline import PipelineSettings
from infrastructure.settings.values import Secret, env_name


class Settings(PipelineSettings, frozen=True, kw_only=True):
    def __post_init__(self) -> None:
        self.check_service()
        self.check_access()
        self.check_providers()
        self.check_dispatch()
        self.check_pipeline()

    def with_servers(self, *, database_url: str, redis_url: str, kafka_bootstrap: str) -> Settings:
        return msgspec.structs.replace(
            self,
            database_url=Secret(database_url),
            redis_url=Secret(redis_url),
            kafka_bootstrap=kafka_bootstrap,
        )

    def to_environ(self) -> dict[str, str]:
        """The HERALD_* variables that rebuild these settings in a child process."""
        out: dict[str, str] = {}
        for name in FIELD_TYPES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, Secret):
                out[env_name(name)] = value.reveal()
            elif isinstance(value, bool):
                out[env_name(name)] = "true" if value else "false"
            else:
                out[env_name(name)] = str(value)
        return out


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Settings, include_extras=True)
SECRET_FIELDS = frozenset(
    name
    for name, hint in FIELD_TYPES.items()
    if Secret in typing.get_args(typing.get_args(hint)[0])
)
