"""Provider-neutral routes: where a caller's requests to a service go.

Release and split semantics are computed here once, from ``release``
(canary, blueGreen, abTest) and ``routing`` (localShare, weights): per
service and calling cluster, an ordered list of routes, each a match (or
every request) and the weighted destinations its requests go to, a
destination being a version (release subset) and/or a cluster (share).
The first route that matches wins. Weights are percentages summing to 100;
destinations with no share are left out.

``stacks.istio.policy`` serialises them as VirtualService http routes,
``stacks.linkerd.policy`` as HTTPRoute / GRPCRoute rules and backendRefs.
Timeouts, retries and faults are per provider: they decorate these routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusters.policy import HeaderMatch
from clusters.spec import ServiceSpec, Spec
from stacks.traffic.placement import cluster_split, running, splits_by_cluster


@dataclass(frozen=True)
class Destination:
    """A share of a route's requests: to ``version``'s workloads and/or ``cluster``'s."""

    weight: int
    version: str | None = None
    cluster: str | None = None


@dataclass(frozen=True)
class Match:
    """Requests with ``header`` and whose path starts with ``path_prefix`` (both if both set)."""

    header: HeaderMatch | None = None
    path_prefix: str | None = None


@dataclass(frozen=True)
class Route:
    name: str
    match: Match | None                      # None: every request
    destinations: tuple[Destination, ...]

    def target(self) -> tuple[Match | None, tuple[Destination, ...]]:
        """What the route does, without its name."""
        return self.match, self.destinations


def same_targets(a: tuple[Route, ...], b: tuple[Route, ...]) -> bool:
    """Whether two route lists send every request to the same place."""
    return [r.target() for r in a] == [r.target() for r in b]


def release_routes(s: ServiceSpec) -> tuple[Route, ...] | None:
    """The routes of ``s``'s release (the same for every caller); None without one."""
    rel = s.release
    if rel is None:
        return None
    if rel.canary is not None:
        c = rel.canary
        routes = []
        if c.header is not None:
            routes.append(Route("canary-header", Match(header=c.header), (Destination(100, c.candidate),)))
        split = tuple(Destination(w, v) for v, w in ((c.stable, 100 - c.weight), (c.candidate, c.weight))
                      if w)
        return (*routes, Route("canary", None, split))
    if rel.blue_green is not None:
        b = rel.blue_green
        routes = []
        if b.header is not None:
            routes.append(Route("preview-header", Match(header=b.header), (Destination(100, b.preview),)))
        return (*routes, Route("active", None, (Destination(100, b.active),)))
    if rel.ab_test is not None:
        ab = rel.ab_test
        routes = [Route(f"ab-{g.name}", Match(header=g.header, path_prefix=g.path_prefix),
                        (Destination(100, g.version),)) for g in ab.groups]
        default = tuple(Destination(w, v) for v, w in ab.default.items() if w)
        return (*routes, Route("ab-default", None, default))
    return None


DEFAULT = (Route("default", None, (Destination(100),)),)
"""Every request to the service as a whole (no subsets)."""


class ServiceRoutes:
    """The neutral routes of one service, per calling cluster.

    Releases and the default are the same for every caller (computed once);
    cluster shares differ per caller (``per_caller``): routing.localShare keeps
    the caller's share in its own cluster. Build once per service and plan.
    """

    def __init__(self, spec: Spec, service: ServiceSpec) -> None:
        self.spec = spec
        self.service = service
        released = release_routes(service)
        self.released = released is not None
        self.per_caller = released is None and splits_by_cluster(service)
        self._shared = released if released is not None else None if self.per_caller else DEFAULT
        self._running = running(spec, service) if self.per_caller else []
        self._by_caller: dict[str, tuple[Route, ...]] = {}

    def for_caller(self, caller: str) -> tuple[Route, ...]:
        """The routes for requests from workloads in cluster ``caller``."""
        if self._shared is not None:
            return self._shared
        routes = self._by_caller.get(caller)
        if routes is None:
            split = cluster_split(self.spec, self.service, caller, self._running)
            routes = (Route(f"from-{caller}", None,
                            tuple(Destination(w, cluster=c) for c, w in split.items())),)
            self._by_caller[caller] = routes
        return routes
