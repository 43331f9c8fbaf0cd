"""Spec -> plan for the configured provider (the one entry both adapters use)."""

from __future__ import annotations

from clusters.errors import SpecError
from clusters.spec import Spec
from stacks.plan import MeshPlan


def build_plan(spec: Spec, source: str = "spec") -> MeshPlan:
    """Validate provider-specific rules and return the plan; raises SpecError."""
    if spec.mesh.provider == "linkerd":
        from stacks.linkerd.plan import build_linkerd_plan

        return build_linkerd_plan(spec, source=source)
    from stacks.istio.plan import build_istio_plan
    from stacks.istio.policy import istio_policy_objects

    return build_istio_plan(spec, policy=istio_policy_objects(spec, source=source), source=source)


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
