"""Reading settings from HERALD_* variables and a .env file, and describing them for .env.example.

Every module receives a `Settings` instance; none reads `os.environ` on its own.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from dotenv import dotenv_values

from infrastructure.settings.model import FIELD_TYPES, SECRET_FIELDS, Settings
from infrastructure.settings.values import (
    PREFIX,
    Secret,
    SettingsError,
    env_name,
    example_of,
    field_meta,
)


def describe() -> list[tuple[str, str, str, Any]]:
    """(variable, description, example, default) for every setting, in declaration order."""
    defaults = {f.name: f.default for f in msgspec.structs.fields(Settings)}
    return [
        (
            env_name(name),
            field_meta(Settings, name).description or "",
            example_of(Settings, name),
            defaults[name],
        )
        for name in FIELD_TYPES
    ]


def env_example() -> str:
    """The text of .env.example: every setting, its description, and its default or example."""
    lines = [
        "# Herald settings, read from the environment or from a .env file beside the command.",
        "# Every variable is optional. Each line shows the default, or an example where there",
        "# is none; copy this file to .env and uncomment what you change. The environment wins.",
    ]
    for variable, description, example, default in describe():
        if isinstance(default, bool):
            value = "true" if default else "false"
        else:
            value = example if default is None else str(default)
        lines += ["", f"# {description}", f"# {variable}={value}"]
    return "\n".join(lines) + "\n"


def _dec_hook(type_: type, value: Any) -> Any:
    if type_ is Secret and isinstance(value, str):
        return Secret(value)
    raise NotImplementedError


def _convert(field: str, raw: str) -> Any:
    variable = env_name(field)
    try:
        return msgspec.convert(raw, FIELD_TYPES[field], strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        shown = "the given value" if field in SECRET_FIELDS else repr(raw)
        reason = str(exc).replace("`", "")
        raise SettingsError(
            variable, f"is invalid: {shown}: {reason}", example_of(Settings, field)
        ) from None


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Build settings from `environ` (default: the process environment) over `env_file`.

    Raises `SettingsError` naming the first bad variable.
    """
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    known = {env_name(name): name for name in FIELD_TYPES}
    converted: dict[str, Any] = {}
    for variable, raw in values.items():
        if not variable.startswith(PREFIX):
            continue
        if variable not in known:
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see .env.example for the full list"
            raise SettingsError(variable, "is not a Herald setting", hint=hint)
        if raw == "":
            continue  # an empty variable means "use the default", as in most tools
        field = known[variable]
        converted[field] = _convert(field, raw)
    return Settings(**converted)
