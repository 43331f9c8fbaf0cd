"""The plan: what meshboot applies to each cluster, as plain Python data.

A stack (Istio, Linkerd) turns the spec into a ``MeshPlan``; two adapters
consume it: ``stacks.render`` writes YAML, ``stacks.pulumi_program`` creates
Pulumi resources. The plan is their only input (one direction: spec -> plan
-> adapters): besides the objects it carries the PKI parameters
(``MeshPlan.pki``, an imported root already read) and how to reach each
cluster (``ClusterPlan.connection``: apiServer, context, where its kubeconfig
is), both filled by ``stacks.build.build_plan``.

Values that only exist at deploy time or live in the PKI are *references*
inside the objects; each adapter resolves them its own way:

- ``PkiRef``: certificate/key material. Render reads the local PKI store;
  Pulumi uses the outputs of the PKI dynamic resources (key = secret); both
  through :func:`pki_pem`.
- ``GatewayAddressRef``: a cluster's east-west gateway address. The spec's
  fixed address, else (Pulumi only) the gateway Service's load-balancer
  ingress once the gateway is installed.
- ``KubeconfigRef``: a kubeconfig for reaching another cluster with the token
  of a ServiceAccount there. Only Pulumi can build it (the token exists once
  the cluster does); render lists such objects instead of writing them.

Steps run in order inside a cluster; ``after`` names the steps a step waits
for (Pulumi ``depends_on``, Flux ``dependsOn``). Every object of a step is
labelled ``app.kubernetes.io/managed-by: meshboot`` when the step is added to
its cluster, so both adapters create the same labelled objects; a private key
in Helm values is refused there too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from clusters.kubeconfig import KubeconfigLocation
from pki.hierarchy import PkiParams
from stacks.labels import with_managed_by

PkiItem = Literal["root-cert", "ca-cert", "ca-key", "cert-chain"]


@dataclass(frozen=True)
class PkiRef:
    """PEM from the mesh PKI. ``root-cert`` is the roots ``cluster`` trusts: the mesh root,
    or during a root rotation that cluster's phase's bundle (``pki.rotation``)."""

    item: PkiItem
    cluster: str | None = None

    @property
    def secret(self) -> bool:
        return self.item == "ca-key"


T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class IssuingCa(Protocol[T_co]):
    """A cluster's intermediate (Istio) / issuer (Linkerd): ``pki.ca.CA`` (PEM strings)
    or ``pki.provider.IntermediateCA`` (Pulumi outputs)."""

    @property
    def cert_pem(self) -> T_co: ...

    @property
    def key_pem(self) -> T_co: ...

    @property
    def chain_pem(self) -> T_co: ...


def pki_pem(ref: PkiRef, root_cert_pem: T, intermediates: Mapping[str, IssuingCa[T]],
            bundles: Mapping[str, T] | None = None) -> T:
    """The PEM ``ref`` stands for: the one mapping render, preflight and Pulumi share.

    Generic over the PEM's type (``str``, ``pulumi.Output[str]``); keeping a
    ``ca-key`` secret is the caller's business (``ref.secret``). ``bundles``:
    during a root rotation, each cluster's trust bundle (its ``root-cert``).
    """
    if ref.item == "root-cert":
        if bundles and ref.cluster is not None and ref.cluster in bundles:
            return bundles[ref.cluster]
        return root_cert_pem
    if ref.cluster is None:
        raise ValueError(f"PkiRef {ref.item!r} names no cluster")
    ca = intermediates[ref.cluster]
    if ref.item == "ca-cert":
        return ca.cert_pem
    if ref.item == "ca-key":
        return ca.key_pem
    # cert-chain: the intermediate, then up to and including the root.
    return ca.chain_pem


@dataclass(frozen=True)
class GatewayAddressRef:
    """The address other clusters use to reach ``cluster``'s east-west gateway."""

    cluster: str
    namespace: str             # of the gateway's LoadBalancer Service
    service: str
    fixed: str | None          # the spec's eastWestGateway.address
    after_step: str            # the step that installs the gateway in ``cluster``
    spec_path: str             # key path to name when render has no address
    # Used as a remote's remotePilotAddress: a load-balancer host name is an error.
    require_ip: bool = False


@dataclass(frozen=True)
class KubeconfigRef:
    """A kubeconfig for ``target``: its apiServer, CA and a ServiceAccount token.

    The token and CA come from the ``kubernetes.io/service-account-token``
    Secret ``token_secret`` (namespace, name) that the plan creates in
    ``target``.
    """

    target: str
    api_server: str
    token_secret: tuple[str, str]
    user: str


Ref = PkiRef | GatewayAddressRef | KubeconfigRef


@dataclass(frozen=True)
class HelmRelease:
    """A Helm chart install (Pulumi helm.v3.Release, Flux HelmRelease)."""

    release_name: str
    namespace: str
    chart: str
    repo_name: str             # HelmRepository name in render
    repo_url: str
    version: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One unit of work in a cluster.

    Exactly one of ``objects`` (Kubernetes objects) or ``release`` is set.
    """

    name: str
    after: tuple[str, ...] = ()
    objects: tuple[dict[str, Any], ...] = ()
    release: HelmRelease | None = None


@dataclass(frozen=True)
class ClusterConnection:
    """How an adapter reaches a cluster. The kubeconfig is a location, read only
    by what contacts the cluster (``pulumi up``): render needs none."""

    api_server: str
    context: str | None
    kubeconfig: KubeconfigLocation


class PlanIncomplete(LookupError):
    """A plan used before ``stacks.build.build_plan`` filled in its PKI and connections."""


@dataclass
class ClusterPlan:
    cluster: str
    steps: list[Step] = field(default_factory=list)
    # Set by stacks.build.build_plan once the provider's builder returns.
    connection_params: ClusterConnection | None = None

    @property
    def connection(self) -> ClusterConnection:
        if self.connection_params is None:
            raise PlanIncomplete(f"{self.cluster}: the plan has no connection data "
                                 "(build it with stacks.build.build_plan)")
        return self.connection_params

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"{self.cluster}: no step {name!r}")

    def add(self, step: Step) -> Step:
        """Append ``step`` with every object labelled managed-by meshboot; return it.

        Refuses a private key in Helm values: Helm keeps values in plain release
        Secrets (and Pulumi in release inputs); keys go into Secrets only.
        """
        if any(s.name == step.name for s in self.steps):
            raise ValueError(f"{self.cluster}: duplicate step {step.name!r}")
        for dep in step.after:
            self.step(dep)  # must already exist: steps are in dependency order
        if step.release is not None:
            for ref in walk_refs(step.release.values):
                if isinstance(ref, PkiRef) and ref.secret:
                    raise ValueError(f"{self.cluster}/{step.name}: refusing a private key "
                                     f"({ref.item} of {ref.cluster}) in Helm values; "
                                     "put it in a Secret")
        step = replace(step, objects=tuple(with_managed_by(o) for o in step.objects))
        self.steps.append(step)
        return step



@dataclass(frozen=True)
class StepRef:
    """A step of one cluster, or one object of it (``obj``: kind, namespace, name)."""

    cluster: str
    step: str
    obj: tuple[str, str, str] | None = None

    def text(self) -> str:
        what = f"{self.cluster}/{self.step}"
        return what if self.obj is None else f"{what} ({self.obj[0]} {self.obj[1]}/{self.obj[2]})"


@dataclass(frozen=True)
class CrossClusterDep:
    """``waiter`` may be applied only once ``target`` (in another cluster) exists.

    Pulumi turns it into ``depends_on``; Flux cannot express dependencies across
    clusters, so render prints it and writes it into its marker.
    """

    waiter: StepRef
    target: StepRef
    reason: str

    def as_dict(self) -> dict[str, Any]:
        def ref(r: StepRef) -> dict[str, Any]:
            out: dict[str, Any] = {"cluster": r.cluster, "step": r.step}
            if r.obj is not None:
                out["object"] = {"kind": r.obj[0], "namespace": r.obj[1], "name": r.obj[2]}
            return out
        return {"apply": ref(self.waiter), "after": ref(self.target), "why": self.reason}


@dataclass
class MeshPlan:
    provider: str
    mesh_id: str
    clusters: list[ClusterPlan]
    notes: list[str] = field(default_factory=list)
    # Order across clusters, beyond each cluster's own step order.
    order: list[CrossClusterDep] = field(default_factory=list)
    # The PKI inputs, an imported root already read from its files. Set by
    # stacks.build.build_plan once the provider's builder returns.
    pki_params: PkiParams | None = None

    @property
    def pki(self) -> PkiParams:
        if self.pki_params is None:
            raise PlanIncomplete("the plan has no PKI parameters (build it with "
                                 "stacks.build.build_plan)")
        return self.pki_params

    def cluster(self, name: str) -> ClusterPlan:
        for c in self.clusters:
            if c.cluster == name:
                return c
        raise KeyError(name)


def walk_refs(value: Any) -> Iterator[Ref]:
    """Every reference inside a (nested) value."""
    if isinstance(value, PkiRef | GatewayAddressRef | KubeconfigRef):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from walk_refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from walk_refs(v)


_REF_TYPES = (PkiRef, GatewayAddressRef, KubeconfigRef)


def resolve(value: Any, resolver: Callable[[Ref], Any]) -> Any:
    """``value`` with every reference replaced by ``resolver(ref)``.

    Sub-trees without references are returned as they are (not copied):
    plan objects are never mutated, and this keeps render close to the cost
    of dumping YAML.
    """
    kind = type(value)
    if kind is dict:
        out = None
        for k, v in value.items():
            t = type(v)
            if t is str or t is int or t is bool or v is None:
                continue
            new = resolve(v, resolver)
            if new is not v:
                if out is None:
                    out = dict(value)
                out[k] = new
        return value if out is None else out
    if kind is list or kind is tuple:
        items = [resolve(v, resolver) for v in value]
        if kind is list and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
    if kind in _REF_TYPES:
        return resolver(value)
    return value


def is_secret(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def is_deferred(obj: dict[str, Any]) -> bool:
    """Objects only ``pulumi up`` can create (they need another cluster's token)."""
    # Iterative: render and both object counts call this on every object.
    stack: list[Any] = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            stack.extend(value.values())
        elif kind is list or kind is tuple:
            stack.extend(value)
        elif kind is KubeconfigRef:
            return True
    return False


def kubeconfig_yaml(cluster: str, server: str, ca_pem: str, token: str, user: str) -> str:
    """A token kubeconfig as istiod and the Linkerd service mirror accept it.

    Inline CA data and a bearer token only: istiod rejects exec plugins,
    token files and file-based certificates.
    """
    import base64
    import json

    ca_b64 = base64.b64encode(ca_pem.encode()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server, "certificate-authority-data": ca_b64}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    # JSON is YAML; it keeps this free of dumper differences between adapters.
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
