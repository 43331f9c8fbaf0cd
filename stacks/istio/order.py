"""The order across clusters that a first Istio install needs (primary-remote).

Within a cluster, steps already run in the order of the install guides. Across
clusters, upstream's primary-remote guides (istio.io "Install Primary-Remote",
"Install Primary-Remote on different networks") go: expose istiod in the
primary -> install the remote -> apply the remote's remote secret in the
primary -> only then install the remote's east-west gateway. Why, in the
Istio 1.30 sources:

* the remote's injection webhook has ``failurePolicy: Fail`` and an empty
  ``caBundle`` (istio-discovery ``templates/mutatingwebhook.yaml``,
  ``istiodRemote.injectionCABundle`` defaults to ""), so every injected pod in
  the remote is rejected until the primary's istiod patches that bundle;
* the primary's istiod starts the webhook cert patcher for a remote only once
  it has read the remote's secret and leads that cluster
  (``pilot/pkg/serviceregistry/kube/controller/multicluster.go``,
  ``checkShouldLead`` reads ``topology.istio.io/controlPlaneClusters``), and
  the remote reaches the primary's istiod only through ``istiod-gateway`` /
  ``istiod-vs`` (``samples/multicluster/expose-istiod.yaml``);
* the east-west gateway's image is ``auto`` (gateway chart
  ``templates/deployment.yaml``): it cannot start without injection.

And a remote secret is usable only once the target's reader RBAC exists, which
the istiod chart installs (istio-discovery ``templates/reader-clusterrole.yaml``,
``reader-clusterrolebinding.yaml``), not the base chart.
"""

from __future__ import annotations

from clusters.spec import Spec
from stacks.plan import ClusterPlan, CrossClusterDep, StepRef

ISTIO_NS = "istio-system"


def _has(plan: ClusterPlan, step: str) -> bool:
    return any(s.name == step for s in plan.steps)


def _secrets(plan: ClusterPlan, step: str) -> dict[str, tuple[str, str, str]]:
    """name -> (kind, namespace, name) of the Secrets in ``plan``'s ``step`` (first of a name)."""
    out: dict[str, tuple[str, str, str]] = {}
    for s in plan.steps:
        if s.name != step:
            continue
        for obj in s.objects:
            meta = obj.get("metadata", {})
            if obj.get("kind") == "Secret" and meta.get("name") not in out:
                out[meta.get("name")] = ("Secret", meta.get("namespace", "default"), meta.get("name"))
    return out


def cross_cluster_order(spec: Spec, plans: list[ClusterPlan]) -> list[CrossClusterDep]:
    """Every cross-cluster dependency of the Istio plans (see the module docstring)."""
    by_name = {p.cluster: p for p in plans}
    # Every cluster's remote secrets, indexed once (not searched per pair of clusters).
    remote_secrets = [(other, _secrets(other, "remote-secrets")) for other in plans]
    secrets_of = {p.cluster: secrets for p, secrets in remote_secrets}  # as by_name
    order: list[CrossClusterDep] = []
    for c in spec.clusters:
        plan = by_name[c.name]
        # A remote secret (in any cluster) for ``c`` needs c's reader RBAC: c's istiod.
        for other, secrets in remote_secrets:
            secret = secrets.get(f"istio-remote-secret-{c.name}")
            if secret is not None and _has(plan, "istiod"):
                order.append(CrossClusterDep(
                    StepRef(other.cluster, "remote-secrets", secret), StepRef(c.name, "istiod"),
                    f"the reader RBAC behind {c.name}'s token comes from {c.name}'s istiod chart"))
        if not (c.is_remote and c.primary) or not _has(plan, "eastwest-gateway"):
            continue
        primary = by_name[c.primary]
        if _has(primary, "mesh-gateways"):
            order.append(CrossClusterDep(
                StepRef(c.name, "eastwest-gateway"), StepRef(c.primary, "mesh-gateways"),
                f"the gateway pod is injected by {c.primary}'s istiod, reached through "
                "istiod-gateway/istiod-vs"))
        secret = secrets_of[c.primary].get(f"istio-remote-secret-{c.name}")
        if secret is not None:
            order.append(CrossClusterDep(
                StepRef(c.name, "eastwest-gateway"), StepRef(c.primary, "remote-secrets", secret),
                f"{c.primary}'s istiod patches {c.name}'s injection webhook caBundle only once "
                "it has read this remote secret"))
    return order
