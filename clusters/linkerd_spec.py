"""``meshboot:linkerd``: Linkerd-only settings (placeholder; the Linkerd stack fills it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class LinkerdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel,
                              populate_by_name=True, frozen=True)
