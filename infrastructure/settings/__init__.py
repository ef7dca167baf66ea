"""Herald's one typed settings object, read from HERALD_* variables and an optional .env file.

The fields are declared by area (`service`, `access`, `providers`, `dispatch`); `Settings`
holds them all. Every module receives a `Settings` instance; none reads `os.environ`.
"""

from infrastructure.settings.access import require_master_key, require_signing_key
from infrastructure.settings.loading import describe, env_example, load_settings
from infrastructure.settings.model import SECRET_FIELDS, Settings
from infrastructure.settings.providers import PROVIDERS
from infrastructure.settings.service import MissingServerError, require_servers
from infrastructure.settings.values import (
    IpNetwork,
    Secret,
    SettingsError,
    env_name,
    parse_per_key,
    redact_url,
)

__all__ = [
    "PROVIDERS",
    "SECRET_FIELDS",
    "IpNetwork",
    "MissingServerError",
    "Secret",
    "Settings",
    "SettingsError",
    "describe",
    "env_example",
    "env_name",
    "load_settings",
    "parse_per_key",
    "redact_url",
    "require_master_key",
    "require_servers",
    "require_signing_key",
]
