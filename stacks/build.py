"""Spec -> plan for the configured provider (the one entry both adapters use)."""

from __future__ import annotations

from clusters.spec import Spec
from stacks.plan import MeshPlan


def build_plan(spec: Spec, source: str = "spec") -> MeshPlan:
    """Validate provider-specific rules and return the plan; raises SpecError."""
    if spec.mesh.provider == "linkerd":
        from stacks.linkerd.plan import build_linkerd_plan

        return build_linkerd_plan(spec, source=source)
    from stacks.istio.plan import build_istio_plan
    from stacks.traffic.istio import istio_policy_objects

    return build_istio_plan(spec, policy=istio_policy_objects(spec, source=source), source=source)
