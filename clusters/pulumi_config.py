"""Read the spec from the Pulumi engine's config (``pulumi up``)."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from clusters.loader import spec_from_config
from clusters.spec import CONFIG_KEYS, Spec
from clusters.validate import spec_warnings


def raw_config() -> dict[str, Any]:
    """Every ``meshboot:*`` key the engine passed, JSON-decoded where structured."""
    out: dict[str, Any] = {}
    keys = set(CONFIG_KEYS)
    env = pulumi.runtime.config.get_config_env() or {}
    keys |= {k for k in list(pulumi.runtime.config.CONFIG.get()) + list(env)
             if str(k).startswith("meshboot:")}
    for key in sorted(keys):
        value = pulumi.runtime.get_config(key)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


def load_spec_from_pulumi() -> tuple[Spec, str]:
    """(spec, source name) for the current stack; raises clusters.errors.SpecError."""
    source = f"Pulumi.{pulumi.get_stack()}.yaml"
    spec = spec_from_config(raw_config(), source)
    for warning in spec_warnings(spec):
        pulumi.log.warn(warning.render(source))
    return spec, source
