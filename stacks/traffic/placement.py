"""Where a service's calls come from and which clusters they go to (both providers).

``callers``: the clusters whose workloads may call a service;
``cluster_split``: how ``routing.localShare`` / ``routing.weights`` spread one
caller's calls over the clusters that run the service.
"""

from __future__ import annotations

from clusters.policy import ServicePolicyFields
from clusters.spec import ServiceSpec, Spec


def splits_by_cluster(s: ServicePolicyFields) -> bool:
    """Whether calls are pinned to clusters by share (``localShare`` or ``weights``)."""
    r = s.routing
    return r is not None and (r.local_share is not None or r.weights is not None)


def running(spec: Spec, service: ServiceSpec) -> list[str]:
    """The clusters that run ``service``, in spec order (unknown names dropped)."""
    return [c for c in spec.cluster_names if c in service.clusters]


def callers(spec: Spec, service: ServiceSpec) -> list[str]:
    """Clusters whose workloads may call ``service``, in spec order."""
    allowed = set(service.reachable_from) if service.reachable_from is not None \
        else set(spec.cluster_names)
    allowed |= set(service.clusters)
    return [c for c in spec.cluster_names if c in allowed]


def cluster_split(spec: Spec, service: ServiceSpec, caller: str,
                  running_in: list[str] | None = None) -> dict[str, int]:
    """cluster -> percent of ``caller``'s calls (routing.localShare / weights), zeros dropped.

    The remainder of an uneven split goes to the first clusters in spec order.
    ``running_in``: ``running(spec, service)`` if the caller has it already.
    """
    routing = service.routing
    assert routing is not None
    on = running(spec, service) if running_in is None else running_in
    if routing.weights is not None:
        return {c: routing.weights[c] for c in on if routing.weights.get(c)}
    assert routing.local_share is not None
    if caller in on:
        share = {caller: routing.local_share}
        others = [c for c in on if c != caller]
        rest = 100 - routing.local_share
        if not others:
            return {caller: 100}
    else:
        share, others, rest = {}, on, 100
    base, extra = divmod(rest, len(others))
    for i, c in enumerate(others):
        share[c] = base + (1 if i < extra else 0)
    return {c: w for c, w in share.items() if w}
