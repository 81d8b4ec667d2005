"""Shared base of the API models: camelCase on the wire, frozen, unknown fields refused.

Scalars use pydantic's *strict* mode so a model accepts exactly what the API server's
OpenAPI schema accepts (``"8"`` is not an integer there, ``true`` is not a number).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Strict
from pydantic.alias_generators import to_camel

StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict()]  # strict float still takes ints, as JSON numbers do
StrictStr = Annotated[str, Strict()]
StrictBool = Annotated[bool, Strict()]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )
