"""The one base class of every spec model, and the value types fields share.

Every model forbids unknown keys (a typo is an error, not a silently ignored
setting), takes camelCase keys from the stack file (``localShare``) and
snake_case in Python, is frozen, and refuses type coercion (``"5"`` is not 5).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

from clusters.errors import echo


class Model(BaseModel):
    """Base of every spec model (``meshboot:*`` sections and their parts)."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel,
                              populate_by_name=True, frozen=True,
                              strict=True, allow_inf_nan=False)


# --- durations ---------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# Go's time.Duration is int64 nanoseconds: 2562047h47m16.854775807s is the longest
# duration Kubernetes, Istio and Linkerd can parse.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


def duration_seconds(value: str) -> float:
    """Seconds in a Go-style duration (``1m30s``, ``250ms``); ValueError if it does not parse."""
    if not isinstance(value, str) or not _DURATION.match(value):
        raise ValueError(f"invalid duration {echo(value)} (use a number and a unit, e.g. 250ms, 5s, 1m30s)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))


def _check_duration(value: str) -> str:
    seconds = duration_seconds(value)
    if seconds < 1e-3:
        raise ValueError(f"duration {echo(value)} is shorter than 1ms")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {echo(value)} is longer than 2562047h (the longest Go duration)")
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A Go-style duration of at least 1ms: ``500ms``, ``5s``, ``1m30s``, ``2h``."""


# --- percentages -------------------------------------------------------------------------

def _check_percent(value: float) -> float:
    if value < 0:
        raise ValueError(f"{value} is negative (a percentage is 0 to 100)")
    if value > 100:
        raise ValueError(f"{value} is above 100 (a percentage is 0 to 100)")
    return value


Percent = Annotated[float, AfterValidator(_check_percent)]
"""A percentage 0..100 (fault injection)."""
Share = Annotated[int, AfterValidator(_check_percent)]
"""An integer percentage 0..100 (traffic shares)."""


# --- ports -------------------------------------------------------------------------------

def _port_key(value: object) -> object:
    # `pulumi up` passes structured config as JSON, whose object keys are strings:
    # {"15090": ...} is the engine's spelling of the stack file's {15090: ...}.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        return int(value)
    return value


PortKey = Annotated[int, BeforeValidator(_port_key)]
"""A port as a mapping key: an integer (or its decimal string, from JSON)."""
