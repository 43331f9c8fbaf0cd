"""Traffic and security policy in the spec (per service and mesh wide).

Placeholder models: the traffic-policy work fills these in. Every model
forbids unknown keys so typos are reported, not ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from clusters.errors import Problem

if TYPE_CHECKING:
    from clusters.spec import Spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ServicePolicyFields(_Strict):
    """Optional per-service policy keys, mixed into ``meshboot:services[*]``."""


class SecuritySpec(_Strict):
    """``meshboot:security``: mesh-wide security policy."""


class TrafficSpec(_Strict):
    """``meshboot:traffic``: mesh-wide traffic defaults."""


def validate_policy(spec: Spec) -> list[Problem]:
    """Cross-field checks of policy keys that pydantic cannot express."""
    return []
