"""Serve a benchmark's app factory with the same granian set-up as the api role."""

from __future__ import annotations

import sys

from infrastructure.entrypoints.roles import serve_http
from infrastructure.log import configure_logging
from infrastructure.settings import load_settings


def main() -> None:
    settings = load_settings()
    configure_logging(settings)
    serve_http(settings, sys.argv[1])


if __name__ == "__main__":
    main()
