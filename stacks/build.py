"""Spec -> plan for the configured provider (the one entry both adapters use).

The provider's builder makes the objects; :func:`build_plan` then adds what
the adapters need beyond them, so the plan is their only input: the PKI
parameters (an imported root read from its files here) and, per cluster, how
to reach it (apiServer, context, where its kubeconfig is; the kubeconfig
itself is read only by what contacts the cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clusters.errors import Problem, SpecError
from clusters.kubeconfig import locate_kubeconfig
from clusters.spec import Spec
from pki.hierarchy import PkiParams, resolve_root, rotation_root
from stacks.common import pki_params
from stacks.istio.plan import build_istio_plan
from stacks.linkerd.plan import build_linkerd_plan
from stacks.plan import ClusterConnection, MeshPlan

PlanBuilder = Callable[[Spec, str], MeshPlan]
"""A provider's planner: the spec (and its source, for messages) -> the plan; raises SpecError."""

PROVIDERS: dict[str, PlanBuilder] = {"istio": build_istio_plan, "linkerd": build_linkerd_plan}
"""``meshboot:mesh.provider`` -> its planner."""


def build_plan(spec: Spec, source: str = "spec", base_dir: Path = Path(".")) -> MeshPlan:
    """Validate provider-specific rules and return the plan; raises SpecError.

    ``base_dir``: the stack file's directory, against which relative files of
    the spec (root CA import, kubeconfigs) resolve.
    """
    plan = PROVIDERS[spec.mesh.provider](spec, source)
    plan.pki_params = _pki(spec, source, base_dir)
    for i, c in enumerate(spec.clusters):
        plan.cluster(c.name).connection_params = ClusterConnection(
            api_server=c.api_server, context=c.context,
            kubeconfig=locate_kubeconfig(c, base_dir, i))
    return plan


def _pki(spec: Spec, source: str, base_dir: Path) -> PkiParams:
    try:
        params = pki_params(spec, base_dir)
        _check_rotation_root(params, source)
        return params
    except OSError as err:
        reason = f"cannot read {err.filename}: {err.strerror or err}"
    except UnicodeDecodeError:
        reason = "a root CA file is not PEM text (not UTF-8)"
    raise SpecError(source, [Problem("meshboot:pki.rootCa", reason)])


def _check_rotation_root(params: PkiParams, source: str) -> None:
    """The rotation's new root must be a usable root other than the current one (exit 2)."""
    if params.rotation is None or params.imported_root is None:
        return
    try:
        current = resolve_root(params, None)
    except ValueError:
        return  # the current root's own problem, reported where the PKI is loaded
    try:
        rotation_root(params, current)
    except ValueError as err:
        raise SpecError(source, [Problem("meshboot:pki.rotation.newRoot", str(err))]) from err


def with_plan_problems(err: SpecError) -> SpecError:
    """``err`` plus what the stack's own checks find in the partially valid spec.

    So one run reports spec and stack problems together. A spec too broken for
    the stack checks to run adds nothing.
    """
    if err.partial is None:
        return err
    try:
        # The provider's checks only: reading files (root CA) is the spec's checks' business.
        partial: Spec = err.partial  # type: ignore[assignment]
        PROVIDERS[partial.mesh.provider](partial, err.source)
    except SpecError as more:
        return SpecError(err.source, err.problems + more.problems)
    except Exception:  # noqa: BLE001 - the partial spec may violate what the stacks assume
        return err
    return err
