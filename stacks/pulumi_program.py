"""Pulumi adapter: the plan as Pulumi resources.

One ``MeshEnvironment`` component per stack; under it the PKI (dynamic
resources whose keys are secret outputs) and one ``ClusterMesh`` component per
cluster with its own explicit ``kubernetes.Provider``. Every child is named
``<cluster>-...`` so URNs never collide. Steps map to resources:

- a Helm release step -> ``kubernetes.helm.v3.Release`` (waits for readiness,
  which is what orders ``istiod`` before Istio custom resources);
- Secrets -> ``kubernetes.core.v1.Secret`` with ``data``/``stringData`` as
  secret outputs (key material never lands in plain state);
- other objects of a step -> one ``kubernetes.yaml.v2.ConfigGroup``, so the
  resource count does not grow with the number of services;
- ``after`` -> ``depends_on``; cross-cluster references (tokens, gateway
  addresses) are Outputs, so Pulumi orders them across clusters itself.

The plan is the only input: the PKI from ``plan.pki``, each provider's
context and kubeconfig from ``ClusterPlan.connection`` (the kubeconfigs are
read here, all problems reported at once, before anything is registered).
Steps are registered in a topological order of (cluster, step)
(``graphlib``): ``after``, ``plan.order``, a load-balancer gateway address ->
the gateway's step, a token kubeconfig -> the step creating the token Secret.
"""

from __future__ import annotations

import base64
import heapq
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from clusters.kubeconfig import KubeconfigError
from pki.hierarchy import PkiParams
from pki.provider import IntermediateCA, RootCA
from pki.rotation import signs_with_new, trusted_roots
from stacks import pulumi_urns as names
from stacks.plan import (
    ClusterPlan,
    CrossClusterDep,
    GatewayAddressRef,
    KubeconfigRef,
    MeshPlan,
    PkiRef,
    Ref,
    Step,
    is_secret,
    kubeconfig_yaml,
    pki_pem,
    resolve,
    walk_refs,
)


class ProgramError(Exception):
    """A problem the Pulumi program reports before creating anything."""


@dataclass(frozen=True)
class MeshEnvironmentArgs:
    plan: MeshPlan
    kubeconfigs: dict[str, str]   # cluster -> kubeconfig contents (see all_kubeconfigs)


def all_kubeconfigs(plan: MeshPlan, env: dict[str, str] | None = None) -> dict[str, str]:
    """Every cluster's kubeconfig, or one ProgramError listing every cluster without one.

    Read from where the plan says it is (inline, a file, or $KUBECONFIG, see
    ``clusters.kubeconfig``) and passed explicitly: ``kubernetes.Provider``
    would otherwise silently read whatever KUBECONFIG points at. Checked
    before any resource is registered, so a missing file stops the run before
    the engine has created anything.
    """
    found: dict[str, str] = {}
    problems: list[str] = []
    for cp in plan.clusters:
        try:
            found[cp.cluster] = cp.connection.kubeconfig.read(env).text
        except KubeconfigError as err:
            problems.append(str(err))
    if problems:
        raise ProgramError("\n".join(problems))
    return found


def adopt_existing_objects(env: dict[str, str] | None = None) -> bool:
    """``MESHBOOT_ADOPT_EXISTING=1``: this run may take over objects already in the clusters.

    A one-shot intent like ``MESHBOOT_NEW_ROOT``: after Pulumi state was lost, the
    objects meshboot created are still live and a plain create would fail with
    AlreadyExists. Off otherwise, so a resource renamed between runs (create, then
    delete of the same object) fails loudly instead of deleting the object it just
    adopted, which is the data loss the provider's default guards against.
    """
    return (os.environ if env is None else env).get("MESHBOOT_ADOPT_EXISTING") == "1"


class MeshPki(pulumi.ComponentResource):
    """Root CA and one intermediate (Istio) / issuer (Linkerd) per cluster."""

    def __init__(self, name: str, params: PkiParams,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.MESH_PKI, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        imported = params.imported_root
        rotation = params.rotation
        self.root = RootCA(
            f"{name}-root", profile=params.profile, mesh_id=params.mesh_id,
            trust_domain=params.trust_domain, key_algorithm=params.key_algorithm.value,
            validity_days=params.root_validity_days,
            imported_cert_pem=imported[0] if imported else None,
            imported_key_pem=pulumi.Output.secret(imported[1]) if imported else None,
            # The Pulumi twin of `meshboot render --new-root`: a one-shot intent, not config.
            allow_new_root=os.environ.get("MESHBOOT_NEW_ROOT") == "1",
            next_root_cert_pem=rotation.new_root[0] if rotation else None,
            opts=child)
        # A root rotation (pki.rotation): the new root, imported from the stack file like
        # the current one; each cluster signs with the root and trusts the bundle of its
        # phase, exactly as pki.hierarchy.build does for render.
        self.next_root: RootCA | None = None
        if rotation is not None:
            self.next_root = RootCA(
                f"{name}-next-root", profile=params.profile, mesh_id=params.mesh_id,
                trust_domain=params.trust_domain, key_algorithm=params.key_algorithm.value,
                validity_days=params.root_validity_days,
                imported_cert_pem=rotation.new_root[0],
                imported_key_pem=pulumi.Output.secret(rotation.new_root[1]), opts=child)
        self.intermediates: dict[str, IntermediateCA] = {}
        self.bundles: dict[str, pulumi.Output[str]] = {}
        for c in params.clusters:
            signer = self.root
            if rotation is not None and self.next_root is not None:
                phase = rotation.phase_of(c)
                roots = {"old": self.root, "new": self.next_root}
                self.bundles[c] = pulumi.Output.concat(
                    *(roots[r].cert_pem for r in trusted_roots(phase)))
                if signs_with_new(phase):
                    signer = self.next_root
            self.intermediates[c] = IntermediateCA(
                names.intermediate_name(c), profile=params.profile, mesh_id=params.mesh_id,
                trust_domain=params.trust_domain, key_algorithm=params.key_algorithm.value,
                cluster=c, validity_days=params.intermediate_validity_days,
                renew_before_days=params.renew_before_days,
                root_cert_pem=signer.cert_pem, root_key_pem=signer.key_pem, opts=child)
        self.register_outputs({"rootCertPem": self.root.cert_pem})

    def resolve(self, ref: PkiRef) -> pulumi.Output[str]:
        value = pki_pem(ref, self.root.cert_pem, self.intermediates, self.bundles)
        return pulumi.Output.secret(value) if ref.secret else value


@dataclass(frozen=True)
class ClusterMeshArgs:
    plan: ClusterPlan
    kubeconfig: pulumi.Input[str]   # contents (secret); context and apiServer from the plan


class ClusterMesh(pulumi.ComponentResource):
    """One cluster: its own explicit ``kubernetes.Provider`` and its steps' resources.

    The environment adds the steps (:meth:`add_step`) in an order across
    clusters (a step may wait for another cluster's token or gateway), then
    calls :meth:`finish`, which registers the component's outputs.
    """

    def __init__(self, name: str, args: ClusterMeshArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.CLUSTER_MESH, name, None, opts)
        self.plan = args.plan
        connection = args.plan.connection
        self.provider = k8s.Provider(
            names.provider_name(name),
            kubeconfig=pulumi.Output.secret(args.kubeconfig),
            context=connection.context,
            # pulumi-kubernetes >= 4.29 creates with a client-side create that fails on an
            # object already in the cluster, unless upsertExistingObjects (pulumi-kubernetes
            # PR #4278, provider.go Configure). Set explicitly, so an ambient
            # PULUMI_K8S_UPSERT_EXISTING_OBJECTS never changes what meshboot does; on only
            # for a run that re-adopts live objects after Pulumi state was lost.
            upsert_existing_objects=adopt_existing_objects(),
            # deleteUnreachable is left unset on purpose: a refresh configures the provider
            # from its inputs in the state, and an input there overrides the environment
            # (provider.go Configure), so only an unset one lets `meshboot dr plan`'s
            # `PULUMI_K8S_DELETE_UNREACHABLE=true pulumi refresh` drop a lost cluster's objects.
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["kubeconfig"]))
        self.done: dict[str, list[pulumi.Resource]] = {}
        self.secrets: dict[tuple[str, str], k8s.core.v1.Secret] = {}

    def child_opts(self, depends_on: list[pulumi.Resource] | None = None,
                   **more: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider,
                                      depends_on=depends_on or [], **more)

    def add_step(self, step: Step, resolver: Callable[[Ref], Any],
                 deps: list[pulumi.Resource],
                 per_object: dict[tuple[str, str, str], list[pulumi.Resource]]) -> None:
        """Create ``step``'s resources after ``deps`` (``per_object``: extra, per Secret)."""
        cluster = self.plan.cluster
        opts = self.child_opts(deps)
        made: list[pulumi.Resource] = []
        if step.release is not None:
            rel = step.release
            made.append(k8s.helm.v3.Release(
                names.step_resource_name(cluster, step.name),
                name=rel.release_name,
                chart=rel.chart,
                version=rel.version,
                namespace=rel.namespace,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=rel.repo_url),
                values=resolve(rel.values, resolver),
                opts=opts))
            self.done[step.name] = made
            return
        plain = []
        for obj in step.objects:
            if is_secret(obj):
                meta = obj["metadata"]
                extra = per_object.get(("Secret", meta.get("namespace", "default"), meta["name"]))
                made.append(self._secret(obj, resolver, opts if not extra else
                                         pulumi.ResourceOptions.merge(
                                             opts, pulumi.ResourceOptions(depends_on=extra))))
            else:
                plain.append(resolve(obj, resolver))
        if plain:
            made.append(k8s.yaml.v2.ConfigGroup(names.step_resource_name(cluster, step.name),
                                                objs=plain, opts=opts))
        self.done[step.name] = made

    def _secret(self, obj: dict[str, Any], resolver: Callable[[Ref], Any],
                opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        string_data = obj.get("stringData")
        secret = k8s.core.v1.Secret(
            names.secret_name(self.plan.cluster, ns, name),
            metadata=meta,
            type=obj.get("type"),
            string_data=pulumi.Output.secret(resolve(string_data, resolver))
            if string_data else None,
            data=pulumi.Output.secret(obj["data"]) if obj.get("data") else None,
            # pulumi-kubernetes marks Secret data/stringData outputs secret itself.
            opts=opts)
        self.secrets[(ns, name)] = secret
        return secret

    def finish(self) -> None:
        self.register_outputs({"cluster": self.plan.cluster,
                               "steps": [s.name for s in self.plan.steps]})


Node = tuple[str, str]   # (cluster, step)


class MeshEnvironment(pulumi.ComponentResource):
    """The whole environment: PKI plus every cluster's steps, from the plan alone."""

    def __init__(self, name: str, args: MeshEnvironmentArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.ENVIRONMENT, name, None, opts)
        plan = args.plan
        self.pki = MeshPki(names.pki_name(name), plan.pki, pulumi.ResourceOptions(parent=self))
        self.order = plan.order
        # Checked before any cluster resource exists: a cycle registers nothing more.
        schedule = _schedule(plan)
        self.clusters: dict[str, ClusterMesh] = {
            cp.cluster: ClusterMesh(cp.cluster, ClusterMeshArgs(cp, args.kubeconfigs[cp.cluster]),
                                    pulumi.ResourceOptions(parent=self))
            for cp in plan.clusters}
        self._gateway_addresses: dict[str, pulumi.Output[str]] = {}
        self._kubeconfigs: dict[tuple[str, str, str], pulumi.Output[str]] = {}
        resolver = self._resolver()
        for cluster, step_name in schedule:
            cm = self.clusters[cluster]
            step = cm.plan.step(step_name)
            deps, per_object = self._dependencies(cm, step)
            cm.add_step(step, resolver, deps, per_object)
        for cm in self.clusters.values():
            cm.finish()
        self.register_outputs({
            "rootCertPem": self.pki.root.cert_pem,
            "clusters": sorted(self.clusters),
        })

    def _cross(self, cluster: str, step: Step) -> list[CrossClusterDep]:
        return [d for d in self.order
                if d.waiter.cluster == cluster and d.waiter.step == step.name]

    def _dependencies(self, cm: ClusterMesh, step: Step) -> tuple[
            list[pulumi.Resource], dict[tuple[str, str, str], list[pulumi.Resource]]]:
        """``depends_on`` of the step, and extra per waiting Secret (kind, ns, name)."""
        deps = [r for dep in step.after for r in cm.done[dep]]
        per_object: dict[tuple[str, str, str], list[pulumi.Resource]] = {}
        for cross in self._cross(cm.plan.cluster, step):
            if cross.waiter.obj is None:
                deps += self._targets(cross)
            else:
                per_object.setdefault(cross.waiter.obj, []).extend(self._targets(cross))
        return deps, per_object

    def _targets(self, dep: CrossClusterDep) -> list[pulumi.Resource]:
        """The resources ``dep`` waits for: one Secret, or the target step's resources."""
        target = self.clusters[dep.target.cluster]
        if dep.target.obj is not None:
            kind, ns, name = dep.target.obj
            if kind == "Secret" and (ns, name) in target.secrets:
                return [target.secrets[(ns, name)]]
        return target.done[dep.target.step]

    def _resolver(self) -> Callable[[Ref], Any]:
        def resolver(ref: Ref) -> Any:
            if isinstance(ref, PkiRef):
                return self.pki.resolve(ref)
            if isinstance(ref, GatewayAddressRef):
                return self._gateway_address(ref)
            return self._kubeconfig(ref)
        return resolver

    def _gateway_address(self, ref: GatewayAddressRef) -> pulumi.Input[str]:
        if ref.fixed:
            return ref.fixed  # a fixed host name is checked against the spec (stacks.istio.plan)
        address = self._ingress(ref)
        if ref.require_ip:
            cluster, path = ref.cluster, ref.spec_path
            return address.apply(lambda a: _pilot_address(cluster, path, a))
        return address

    def _ingress(self, ref: GatewayAddressRef) -> pulumi.Output[str]:
        if ref.cluster not in self._gateway_addresses:
            cm = self.clusters[ref.cluster]
            svc = k8s.core.v1.Service.get(
                names.gateway_read_name(ref.cluster, ref.service), f"{ref.namespace}/{ref.service}",
                opts=cm.child_opts(cm.done[ref.after_step]))
            cluster = ref.cluster
            self._gateway_addresses[cluster] = svc.status.apply(
                lambda status: _ingress_address(cluster, ref.spec_path, status))
        return self._gateway_addresses[ref.cluster]

    def _kubeconfig(self, ref: KubeconfigRef) -> pulumi.Output[str]:
        key = (ref.target, *ref.token_secret)
        if key not in self._kubeconfigs:
            cm = self.clusters[ref.target]
            ns, name = ref.token_secret
            # Read back after creation: the token controller fills data.token/ca.crt.
            live = k8s.core.v1.Secret.get(
                names.token_read_name(ref.target, name), f"{ns}/{name}",
                opts=cm.child_opts([cm.secrets[ref.token_secret]],
                                   additional_secret_outputs=["data"]))
            self._kubeconfigs[key] = pulumi.Output.secret(live.data.apply(
                lambda data: _token_kubeconfig(ref, data)))
        return self._kubeconfigs[key]


def _schedule(plan: MeshPlan) -> list[Node]:
    """Every (cluster, step) once its inputs exist; ProgramError naming a cycle's steps.

    Edges: a step's ``after``; ``plan.order`` (cross-cluster); a gateway
    address read from a load balancer -> the step installing that gateway; a
    token kubeconfig -> the step creating the token Secret. Of the steps ready
    at a time the first in plan order (cluster, then step) goes first, so the
    registration order is deterministic.
    """
    position: dict[Node, tuple[int, int]] = {}
    holder: dict[tuple[str, str, str], str] = {}   # (cluster, ns, name) -> step of a Secret
    for ci, cp in enumerate(plan.clusters):
        for si, step in enumerate(cp.steps):
            position[(cp.cluster, step.name)] = (ci, si)
            for obj in step.objects:
                if is_secret(obj):
                    meta = obj["metadata"]
                    holder[(cp.cluster, meta.get("namespace", "default"), meta["name"])] = step.name
    edges: list[tuple[Node, Node]] = []   # (waiter, what it waits for)
    problems: list[str] = []
    for cp in plan.clusters:
        for step in cp.steps:
            node = (cp.cluster, step.name)
            edges += [(node, (cp.cluster, dep)) for dep in step.after]
            for ref in _refs(step):
                if isinstance(ref, GatewayAddressRef) and not ref.fixed:
                    edges.append((node, (ref.cluster, ref.after_step)))
                elif isinstance(ref, KubeconfigRef):
                    where = holder.get((ref.target, *ref.token_secret))
                    if where is None:
                        problems.append(f"{cp.cluster}/{step.name}: cluster {ref.target!r} has no "
                                        f"step creating the token Secret "
                                        f"{'/'.join(ref.token_secret)}")
                    else:
                        edges.append((node, (ref.target, where)))
    edges += [((d.waiter.cluster, d.waiter.step), (d.target.cluster, d.target.step))
              for d in plan.order]
    unknown = sorted({f"{c}/{s}" for edge in edges for c, s in edge if (c, s) not in position})
    if unknown:
        problems.append(f"dependencies on steps the plan does not have: {', '.join(unknown)}")
    if problems:
        raise ProgramError("\n".join(problems))
    graph: TopologicalSorter[Node] = TopologicalSorter()
    for node in position:
        graph.add(node)
    for waiter, target in edges:
        graph.add(waiter, target)
    try:
        graph.prepare()
    except CycleError as err:
        cycle = " -> ".join(f"{c}/{s}" for c, s in err.args[1])
        raise ProgramError(f"circular dependencies between steps: {cycle}") from None
    order: list[Node] = []
    ready: list[tuple[tuple[int, int], Node]] = []
    while graph.is_active():
        for node in graph.get_ready():
            heapq.heappush(ready, (position[node], node))
        _, node = heapq.heappop(ready)
        order.append(node)
        graph.done(node)
    return order


def _refs(step: Step) -> list[Ref]:
    items: list[Any] = list(step.objects)
    if step.release is not None:
        items.append(step.release.values)
    return list(walk_refs(items))


def _field(obj: Any, snake: str, camel: str) -> Any:
    """A field of an SDK output type (attribute) or of a plain dict (camelCase key)."""
    if obj is None:
        return None
    if isinstance(obj, dict) and camel in obj:
        return obj[camel]
    return getattr(obj, snake, None)


def _ingress_address(cluster: str, spec_path: str, status: Any) -> str:
    lb = _field(status, "load_balancer", "loadBalancer")
    for entry in _field(lb, "ingress", "ingress") or []:
        addr = _field(entry, "ip", "ip") or _field(entry, "hostname", "hostname")
        if addr:
            return str(addr)
    raise ProgramError(f"{spec_path}: cluster {cluster!r}: the east-west gateway Service has no "
                       "load-balancer ingress; set this address, or give the cluster a "
                       "load-balancer implementation (e.g. MetalLB on kind)")


def _pilot_address(cluster: str, spec_path: str, address: str) -> str:
    """A load-balancer address used as remotePilotAddress: an IP, as upstream expects.

    istio.io setup/install/multicluster/primary-remote: "not suitable for AWS EKS primary
    cluster deployment" (FQDN load balancers); a host name makes the remote's `istiod`
    Service an ExternalName (istio-discovery templates/remote-istiod-service.yaml).
    """
    try:
        ipaddress.ip_address(address)
    except ValueError:
        allow = spec_path.rsplit(".", 1)[0] + ".allowHostname"
        raise ProgramError(
            f"{spec_path}: cluster {cluster!r}: the east-west gateway's load balancer has the "
            f"host name {address!r}, but remotes need an IP as remotePilotAddress; set this "
            f"address to an IP, or {allow}: true to accept the host name") from None
    return address


def _token_kubeconfig(ref: KubeconfigRef, data: Any) -> str:
    data = data or {}
    token_b64, ca_b64 = data.get("token"), data.get("ca.crt")
    if not token_b64 or not ca_b64:
        raise ProgramError(f"cluster {ref.target!r}: Secret {'/'.join(ref.token_secret)} has no "
                           "token yet (is the ServiceAccount there?); run `pulumi up` again")
    token = base64.b64decode(token_b64).decode()
    ca_pem = base64.b64decode(ca_b64).decode()
    return kubeconfig_yaml(ref.target, ref.api_server, ca_pem, token, ref.user)


def build_environment(plan: MeshPlan) -> MeshEnvironment:
    """Create every resource of the environment from the plan (call inside a Pulumi program)."""
    kubeconfigs = all_kubeconfigs(plan)
    env = MeshEnvironment(plan.mesh_id, MeshEnvironmentArgs(plan, kubeconfigs))
    pulumi.export("rootCertPem", env.pki.root.cert_pem)
    pulumi.export("clusters", [cp.cluster for cp in plan.clusters])
    return env
