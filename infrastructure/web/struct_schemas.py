"""Request bodies in the OpenAPI document say what msgspec enforces when it decodes them.

litestar's schema for a struct misses two of msgspec's rules, and so promised bodies that the
api refuses:
- a struct declared with `forbid_unknown_fields=True` (every request body of Herald's) takes no
  field it does not name: its schema gets `additionalProperties: false`;
- an optional number's bounds (`Annotated[int, Meta(ge=0)] | None`) were dropped: they are
  written back. JSON Schema applies them to numbers only, so null stays allowed.

A struct states its rules across fields, such as "exactly one of these two", by a class
variable `OPENAPI_RULES`: schemas that a body matches each of (`allOf`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import Schema

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition

_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusive_minimum", "lt": "exclusive_maximum"}


class StructSchemas(StructSchemaPlugin):
    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if not isinstance(info, msgspec.inspect.StructType):
            return schema
        if info.forbid_unknown_fields:
            schema.additional_properties = False
        if (rules := getattr(field_definition.type_, "OPENAPI_RULES", None)) is not None:
            schema.all_of = list(rules)
        for field in info.fields:
            prop = (schema.properties or {}).get(field.encode_name)
            if isinstance(prop, Schema):
                _bound_optional_number(prop, field.type)
        return schema


def _bound_optional_number(prop: Schema, kind: msgspec.inspect.Type) -> None:
    if not isinstance(kind, msgspec.inspect.UnionType):
        return
    for member in kind.types:
        if isinstance(member, msgspec.inspect.IntType | msgspec.inspect.FloatType):
            for ours, theirs in _BOUNDS.items():
                bound: Any = getattr(member, ours)
                if bound is not None and getattr(prop, theirs) is None:
                    setattr(prop, theirs, bound)
