"""Istio traffic and security policy objects per cluster (filled by the policy work)."""

from __future__ import annotations

from typing import Any

from clusters.spec import Spec


def istio_policy_objects(spec: Spec, source: str = "spec") -> dict[str, list[dict[str, Any]]]:
    """cluster name -> Istio objects implementing the spec's traffic/security policy."""
    return {}
