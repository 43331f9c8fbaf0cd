"""The label every object meshboot creates carries, so all of it can be selected or pruned."""

from __future__ import annotations

from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MESHBOOT = "meshboot"
MANAGED = {MANAGED_BY: MESHBOOT}


def with_managed_by(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` labelled ``managed-by: meshboot``; a new dict where it changes, never mutated.

    Only the object's own dict and its ``metadata`` are copied: plans share
    sub-objects, so nothing reachable from ``obj`` is written to.
    """
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) == MESHBOOT:
        return obj
    return {**obj, "metadata": {**meta, "labels": {**labels, MANAGED_BY: MESHBOOT}}}
