"""Notification templates on disk: HERALD_TEMPLATES_DIR/NAME.toml with `body` and `subject`.

Files are read when first needed and again whenever they change, so editing a template
takes effect without a restart. A missing file is a missing template; a malformed one
raises RenderError saying what is wrong with it.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

from domain.notifications.rendering import RenderError, Template


class TemplateDirectory(Mapping[str, Template]):
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._cache: dict[str, tuple[float, Template]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Template:
        path = self._directory / f"{name}.toml"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            raise KeyError(name) from None
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        try:
            data = tomllib.loads(path.read_text())
        except OSError:
            raise KeyError(name) from None
        except tomllib.TOMLDecodeError as exc:
            raise RenderError(f"template {name!r} is not valid TOML: {exc}") from None
        body, subject = data.get("body"), data.get("subject")
        if not isinstance(body, str) or not (subject is None or isinstance(subject, str)):
            raise RenderError(f"template {name!r} needs a string `body` and an optional `subject`")
        template = Template(body=body, subject=subject)
        with self._lock:
            self._cache[name] = (mtime, template)
        return template

    def __iter__(self) -> Iterator[str]:
        return (path.stem for path in sorted(self._directory.glob("*.toml")))

    def __len__(self) -> int:
        return sum(1 for _ in self)
