"""The names, types and URNs of the resources meshboot's Pulumi program registers.

One place for what ``stacks.pulumi_program`` calls its resources, so the
program and ``meshboot dr plan`` (which prints ``pulumi refresh/up --target``
commands) can never disagree. Pure data: no ``pulumi`` import, so the CLI
computes URNs without loading the Pulumi SDK.

A URN is ``urn:pulumi:<stack>::<project>::<qualified type>::<name>``, the
qualified type being the parent's qualified type, ``$``, the resource's own
type; a parent that is the root ``pulumi:pulumi:Stack`` adds nothing
(pulumi/pulumi ``sdk/go/common/resource/urn/urn.go`` ``New``, and
``pkg/resource/deploy/deployment.go`` ``generateURN``, which passes the
parent's *whole* qualified type).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from stacks.plan import (
    GatewayAddressRef,
    KubeconfigRef,
    MeshPlan,
    Step,
    is_secret,
    walk_refs,
)

ROOT_STACK = "pulumi:pulumi:Stack"
ENVIRONMENT = "meshboot:index:MeshEnvironment"
MESH_PKI = "meshboot:index:MeshPki"
CLUSTER_MESH = "meshboot:index:ClusterMesh"
# Dynamic resources: ``pulumi-python:dynamic/<module>:<name>`` (pulumi.dynamic.Resource
# with module=/name=, see pki.provider.RootCA / IntermediateCA).
ROOT_CA = "pulumi-python:dynamic/meshboot:RootCA"
INTERMEDIATE_CA = "pulumi-python:dynamic/meshboot:IntermediateCA"
K8S_PROVIDER = "pulumi:providers:kubernetes"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"


# ---------------------------------------------------------------- names (program uses these)
def pki_name(mesh_id: str) -> str:
    return f"{mesh_id}-pki"


def root_name(mesh_id: str) -> str:
    """MeshPki names its root `<its own name>-root`."""
    return f"{pki_name(mesh_id)}-root"


def next_root_name(mesh_id: str) -> str:
    """During a root rotation MeshPki also holds the new root, `<its own name>-next-root`."""
    return f"{pki_name(mesh_id)}-next-root"


def intermediate_name(cluster: str) -> str:
    return f"{cluster}-ca"


def provider_name(cluster: str) -> str:
    return f"{cluster}-k8s"


def step_resource_name(cluster: str, step: str) -> str:
    """A Helm release step's Release, or the ConfigGroup of a step's non-Secret objects."""
    return f"{cluster}-{step}"


def secret_name(cluster: str, namespace: str, name: str) -> str:
    return f"{cluster}-secret-{namespace}-{name}"


def token_read_name(target: str, secret: str) -> str:
    """``Secret.get`` of a token Secret meshboot created in ``target``."""
    return f"{target}-{secret}-read"


def gateway_read_name(cluster: str, service: str) -> str:
    """``Service.get`` of ``cluster``'s east-west gateway load balancer."""
    return f"{cluster}-{service}-lb"


# ---------------------------------------------------------------------------- URNs
def make_urn(stack: str, project: str, parent_type: str | None, type_: str, name: str) -> str:
    qualified = f"{parent_type}${type_}" if parent_type and parent_type != ROOT_STACK else type_
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


Kind = Literal["component", "provider", "pki", "release", "objects", "object", "secret", "read"]


@dataclass(frozen=True)
class ProgramResource:
    """One resource the program registers, where and why."""

    urn: str
    type: str
    name: str
    kind: Kind
    cluster: str | None = None       # whose ClusterMesh it is under (None: environment, PKI)
    step: str | None = None
    secret: tuple[str, str] | None = None   # (namespace, name) of a Secret or a token read


def program_resources(plan: MeshPlan, stack: str, project: str) -> list[ProgramResource]:
    """Every resource ``stacks.pulumi_program.build_environment(plan)`` registers, by URN.

    ``stack`` is the bare stack name (``dev`` of ``org/project/dev``): URNs hold no
    organisation. The children a ``ConfigGroup`` creates in the provider are not
    objects a ``ConfigGroup`` registers (kind ``object``) are named as the provider
    names them (:func:`config_group_child`).
    """
    env_type = ENVIRONMENT
    cm_type = f"{ENVIRONMENT}${CLUSTER_MESH}"
    pki_type = f"{ENVIRONMENT}${MESH_PKI}"
    mesh = plan.mesh_id

    def res(parent: str | None, type_: str, name: str, kind: Kind, **more: Any) -> ProgramResource:
        return ProgramResource(make_urn(stack, project, parent, type_, name), type_, name, kind,
                               **more)

    out = [res(None, ENVIRONMENT, mesh, "component"),
           res(env_type, MESH_PKI, pki_name(mesh), "component"),
           res(pki_type, ROOT_CA, root_name(mesh), "pki")]
    if plan.pki.rotation is not None:
        out.append(res(pki_type, ROOT_CA, next_root_name(mesh), "pki"))
    out += [res(pki_type, INTERMEDIATE_CA, intermediate_name(c), "pki", cluster=c)
            for c in plan.pki.clusters]
    reads: dict[str, ProgramResource] = {}
    for cp in plan.clusters:
        c = cp.cluster
        out.append(res(env_type, CLUSTER_MESH, c, "component", cluster=c))
        out.append(res(cm_type, K8S_PROVIDER, provider_name(c), "provider", cluster=c))
        for step in cp.steps:
            for r in _step_resources(step, c, lambda *a, **k: res(cm_type, *a, **k)):
                out.append(r)
                if r.kind == "objects":
                    out += [res(f"{cm_type}${CONFIG_GROUP}", *config_group_child(r.name, obj),
                                "object", cluster=c, step=step.name)
                            for obj in step.objects if not is_secret(obj)]
            for ref in _refs(step):
                if isinstance(ref, KubeconfigRef):
                    r = res(cm_type, SECRET, token_read_name(ref.target, ref.token_secret[1]),
                            "read", cluster=ref.target, secret=ref.token_secret)
                elif isinstance(ref, GatewayAddressRef) and not ref.fixed:
                    r = res(cm_type, SERVICE, gateway_read_name(ref.cluster, ref.service),
                            "read", cluster=ref.cluster)
                else:
                    continue
                reads.setdefault(r.urn, r)
    return out + sorted(reads.values(), key=lambda r: r.urn)


def k8s_type_token(api_version: str, kind: str) -> str:
    """pulumi-kubernetes' type token of a kind: ``kubernetes:<group>/<version>:<Kind>``,
    the core group as ``core/v1`` (sdk/go/kubernetes/yaml/v2/kinds.go ``RegisterResource``,
    whose fallback for custom resources is the same pattern)."""
    return f"kubernetes:{'core/v1' if api_version == 'v1' else api_version}:{kind}"


def config_group_child(group: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(type, name) of the resource a ``yaml/v2`` ConfigGroup named ``group`` registers
    for ``obj``: ``<group>:[<namespace>/]<name>`` (the resource prefix defaults to the
    component's name; provider/pkg/provider/yaml/v2/configgroup.go and yaml.go ``register``)."""
    meta = obj.get("metadata") or {}
    name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    return k8s_type_token(obj["apiVersion"], obj["kind"]), f"{group}:{name}"


def _step_resources(step: Step, cluster: str, res: Any) -> list[ProgramResource]:
    if step.release is not None:
        return [res(RELEASE, step_resource_name(cluster, step.name), "release",
                    cluster=cluster, step=step.name)]
    made = []
    plain = False
    for obj in step.objects:
        if is_secret(obj):
            meta = obj["metadata"]
            ns = meta.get("namespace", "default")
            made.append(res(SECRET, secret_name(cluster, ns, meta["name"]), "secret",
                            cluster=cluster, step=step.name, secret=(ns, meta["name"])))
        else:
            plain = True
    if plain:
        made.append(res(CONFIG_GROUP, step_resource_name(cluster, step.name), "objects",
                        cluster=cluster, step=step.name))
    return made


def _refs(step: Step) -> Iterator[Any]:
    yield from walk_refs(list(step.objects))
    if step.release is not None:
        yield from walk_refs(step.release.values)
