"""Rendering a notification's content: a literal body as it is, or a template with variables.

Templates use `$name` / `${name}` placeholders (the standard library's string.Template). A
variable the template needs and the request did not give is a permanent failure: sending
again would fail again, so the dispatcher records the reason and does not retry.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from domain.notifications.values import Content


@dataclass(frozen=True)
class Template:
    body: str
    subject: str | None = None


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


class RenderError(Exception):
    """The content cannot be rendered; `str()` is the reason recorded on the notification."""


def render(content: Content, templates: Mapping[str, Template]) -> Rendered:
    if content.template_id is None:
        return Rendered(content.subject, content.body or "")
    template = templates.get(content.template_id)
    if template is None:
        raise RenderError(f"template {content.template_id!r} does not exist")
    subject = content.subject
    if subject is None and template.subject is not None:
        subject = _fill(content.template_id, "subject", template.subject, content.variables)
    body = _fill(content.template_id, "body", template.body, content.variables)
    return Rendered(subject, body)


def _fill(template_id: str, part: str, text: str, variables: Mapping[str, str]) -> str:
    try:
        return string.Template(text).substitute(variables)
    except KeyError as exc:
        raise RenderError(
            f"template {template_id!r} needs variable {exc.args[0]!r}, which was not given"
        ) from None
    except ValueError:
        raise RenderError(
            f"template {template_id!r} has a malformed placeholder in its {part}"
        ) from None
