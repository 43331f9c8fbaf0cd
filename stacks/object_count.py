"""How many objects an environment has, counted the same way by ``validate`` and ``render``.

``rendered``: every object ``render`` writes: the plan's objects (Secrets
included), one Flux ``HelmRelease`` per Helm release and one ``HelmRepository``
per chart repository and namespace. ``pulumi_only``: objects only ``pulumi up``
creates (cross-cluster credentials built from live clusters' tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.plan import ClusterPlan, HelmRelease, MeshPlan, is_deferred


@dataclass(frozen=True)
class ObjectCount:
    rendered: int = 0
    pulumi_only: int = 0

    def __add__(self, other: ObjectCount) -> ObjectCount:
        return ObjectCount(self.rendered + other.rendered, self.pulumi_only + other.pulumi_only)

    def text(self) -> str:
        extra = f" (+{self.pulumi_only} created by `pulumi up` only)" if self.pulumi_only else ""
        return f"{self.rendered} objects to render{extra}"


def helm_sources(cp: ClusterPlan) -> list[HelmRelease]:
    """One release per Flux HelmRepository of the cluster, by (namespace, repository name)."""
    first: dict[tuple[str, str], HelmRelease] = {}
    for step in cp.steps:
        rel = step.release
        if rel is not None:
            first.setdefault((rel.namespace, rel.repo_name), rel)
    return [first[k] for k in sorted(first)]


def count_cluster(cp: ClusterPlan) -> ObjectCount:
    deferred = sum(1 for s in cp.steps for obj in s.objects if is_deferred(obj))
    plain = sum(len(s.objects) for s in cp.steps) - deferred
    releases = sum(1 for s in cp.steps if s.release is not None)
    return ObjectCount(rendered=plain + releases + len(helm_sources(cp)), pulumi_only=deferred)


def count_objects(plan: MeshPlan) -> dict[str, ObjectCount]:
    """cluster -> its object count."""
    return {cp.cluster: count_cluster(cp) for cp in plan.clusters}


def total(counts: dict[str, ObjectCount]) -> ObjectCount:
    return sum(counts.values(), ObjectCount())
