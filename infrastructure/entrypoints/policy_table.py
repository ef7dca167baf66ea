"""Who may call each route, rendered from the live route table for docs/security.md."""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute

from domain.identity.roles import Role
from infrastructure.auth.guard import POLICY, PROBE, Policy

START = "<!-- policy-table:start -->\n"
END = "<!-- policy-table:end -->"


def policy_rows(app: Litestar) -> list[tuple[str, str, str]]:
    rows = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            policy = handler.opt.get(POLICY)
            if not isinstance(policy, Policy) or not handler.include_in_schema:
                continue
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                rows.append((str(method), route.path_format, _who(policy)))
    return sorted(rows, key=lambda row: (row[1], row[0]))


def _who(policy: Policy) -> str:
    if policy == PROBE:
        return "anyone; not rate limited"
    if policy.roles is None:
        return "anyone"
    if policy.roles == frozenset(Role):
        return "any role"
    return ", ".join(role.value for role in Role if role in policy.roles)


def markdown_table(app: Litestar) -> str:
    lines = ["| method | path | who may call |", "|---|---|---|"]
    lines += [f"| {m} | `{p}` | {who} |" for m, p, who in policy_rows(app)]
    return "\n".join(lines) + "\n"


def rewrite_doc(path: str = "docs/security.md") -> None:
    """Refresh the table between the policy-table markers of `path`."""
    from pathlib import Path  # noqa: PLC0415

    from infrastructure.entrypoints.app import create_app  # noqa: PLC0415
    from infrastructure.settings import load_settings  # noqa: PLC0415

    doc = Path(path)
    head, rest = doc.read_text().split(START, 1)
    _, tail = rest.split(END, 1)
    table = markdown_table(create_app(load_settings(environ={}, env_file=None)))
    doc.write_text(f"{head}{START}{table}{END}{tail}")


if __name__ == "__main__":
    rewrite_doc()
