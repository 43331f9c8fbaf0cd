"""Spec -> plan for the configured provider (the one entry both adapters use)."""

from __future__ import annotations

from collections.abc import Callable

from clusters.errors import SpecError
from clusters.spec import Spec
from stacks.istio.plan import build_istio_plan
from stacks.linkerd.plan import build_linkerd_plan
from stacks.plan import MeshPlan

PlanBuilder = Callable[[Spec, str], MeshPlan]
"""A provider's planner: the spec (and its source, for messages) -> the plan; raises SpecError."""

PROVIDERS: dict[str, PlanBuilder] = {"istio": build_istio_plan, "linkerd": build_linkerd_plan}
"""``meshboot:mesh.provider`` -> its planner."""


def build_plan(spec: Spec, source: str = "spec") -> MeshPlan:
    """Validate provider-specific rules and return the plan; raises SpecError."""
    return PROVIDERS[spec.mesh.provider](spec, source)


def with_plan_problems(err: SpecError) -> SpecError:
    """``err`` plus what the stack's own checks find in the partially valid spec.

    So one run reports spec and stack problems together. A spec too broken for
    the stack checks to run adds nothing.
    """
    if err.partial is None:
        return err
    try:
        build_plan(err.partial, source=err.source)  # type: ignore[arg-type]
    except SpecError as more:
        return SpecError(err.source, err.problems + more.problems)
    except Exception:  # noqa: BLE001 - the partial spec may violate what the stacks assume
        return err
    return err
