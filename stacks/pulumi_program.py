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
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from clusters.kubeconfig import KubeconfigError, find_kubeconfig
from clusters.spec import ClusterSpec, Spec
from pki.provider import IntermediateCA, RootCA
from stacks.common import pki_params
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
    resolve,
    walk_refs,
)


class ProgramError(Exception):
    """A problem the Pulumi program reports before creating anything."""


@dataclass(frozen=True)
class MeshEnvironmentArgs:
    spec: Spec
    plan: MeshPlan
    kubeconfigs: dict[str, str]   # cluster -> kubeconfig contents (see all_kubeconfigs)
    base_dir: Path = Path(".")


def kubeconfig_contents(cluster: ClusterSpec, base_dir: Path,
                        env: dict[str, str] | None = None, index: int | None = None) -> str:
    """The kubeconfig for a cluster's provider: inline, a file, or $KUBECONFIG.

    Passed explicitly: ``kubernetes.Provider`` would otherwise silently read
    whatever KUBECONFIG points at. The lookup is ``clusters.kubeconfig``'s
    (shared with ``meshboot preflight --live``).
    """
    try:
        return find_kubeconfig(cluster, base_dir, env, index).text
    except KubeconfigError as err:
        raise ProgramError(str(err)) from None


def all_kubeconfigs(spec: Spec, base_dir: Path) -> dict[str, str]:
    """Every cluster's kubeconfig, or one ProgramError listing every cluster without one.

    Checked before any resource is registered, so a missing file stops the run
    before the engine has created anything.
    """
    found: dict[str, str] = {}
    problems: list[str] = []
    for i, c in enumerate(spec.clusters):
        try:
            found[c.name] = kubeconfig_contents(c, base_dir, index=i)
        except ProgramError as err:
            problems.append(str(err))
    if problems:
        raise ProgramError("\n".join(problems))
    return found


@dataclass
class _ClusterState:
    spec: ClusterSpec
    plan: ClusterPlan
    component: pulumi.ComponentResource
    provider: k8s.Provider
    done: dict[str, list[pulumi.Resource]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], k8s.core.v1.Secret] = field(default_factory=dict)


class MeshPki(pulumi.ComponentResource):
    """Root CA and one intermediate (Istio) / issuer (Linkerd) per cluster."""

    def __init__(self, name: str, spec: Spec, base_dir: Path,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("meshboot:index:MeshPki", name, None, opts)
        params = pki_params(spec, base_dir)
        child = pulumi.ResourceOptions(parent=self)
        imported = params.imported_root
        self.root = RootCA(
            f"{name}-root", profile=params.profile, mesh_id=params.mesh_id,
            trust_domain=params.trust_domain, key_algorithm=params.key_algorithm.value,
            validity_days=params.root_validity_days,
            imported_cert_pem=imported[0] if imported else None,
            imported_key_pem=pulumi.Output.secret(imported[1]) if imported else None,
            # The Pulumi twin of `meshboot render --new-root`: a one-shot intent, not config.
            allow_new_root=os.environ.get("MESHBOOT_NEW_ROOT") == "1",
            opts=child)
        self.intermediates: dict[str, IntermediateCA] = {}
        for c in params.clusters:
            self.intermediates[c] = IntermediateCA(
                f"{c}-ca", profile=params.profile, mesh_id=params.mesh_id,
                trust_domain=params.trust_domain, key_algorithm=params.key_algorithm.value,
                cluster=c, validity_days=params.intermediate_validity_days,
                renew_before_days=params.renew_before_days,
                root_cert_pem=self.root.cert_pem, root_key_pem=self.root.key_pem, opts=child)
        self.register_outputs({"rootCertPem": self.root.cert_pem})

    def resolve(self, ref: PkiRef) -> pulumi.Output[str]:
        if ref.item == "root-cert":
            return self.root.cert_pem
        assert ref.cluster is not None
        ca = self.intermediates[ref.cluster]
        if ref.item == "ca-cert":
            return ca.cert_pem
        if ref.item == "ca-key":
            return pulumi.Output.secret(ca.key_pem)
        return ca.chain_pem


class MeshEnvironment(pulumi.ComponentResource):
    """The whole environment: PKI plus every cluster's steps."""

    def __init__(self, name: str, args: MeshEnvironmentArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("meshboot:index:MeshEnvironment", name, None, opts)
        spec, plan = args.spec, args.plan
        self.pki = MeshPki(f"{name}-pki", spec, args.base_dir,
                           pulumi.ResourceOptions(parent=self))
        self.clusters: dict[str, _ClusterState] = {}
        for cp in plan.clusters:
            cspec = spec.cluster(cp.cluster)
            comp = pulumi.ComponentResource("meshboot:index:ClusterMesh", cp.cluster, None,
                                            pulumi.ResourceOptions(parent=self))
            provider = k8s.Provider(
                f"{cp.cluster}-k8s",
                kubeconfig=pulumi.Output.secret(args.kubeconfigs[cp.cluster]),
                context=cspec.context,
                opts=pulumi.ResourceOptions(parent=comp, additional_secret_outputs=["kubeconfig"]))
            self.clusters[cp.cluster] = _ClusterState(cspec, cp, comp, provider)
        self.order = plan.order
        self._gateway_addresses: dict[str, pulumi.Output[str]] = {}
        self._kubeconfigs: dict[tuple[str, str, str], pulumi.Output[str]] = {}
        self._build_all()
        self.register_outputs({
            "rootCertPem": self.pki.root.cert_pem,
            "clusters": sorted(self.clusters),
        })

    # -- scheduling: a step runs once its own and its cross-cluster inputs exist
    def _build_all(self) -> None:
        pending = [(st, step) for st in self.clusters.values() for step in st.plan.steps]
        while pending:
            progressed = False
            rest = []
            for st, step in pending:
                if self._ready(st, step):
                    st.done[step.name] = self._build_step(st, step)
                    progressed = True
                else:
                    rest.append((st, step))
            if not progressed:
                names = ", ".join(f"{st.plan.cluster}/{s.name}" for st, s in rest)
                raise ProgramError(f"circular cross-cluster dependencies between: {names}")
            pending = rest

    def _ready(self, st: _ClusterState, step: Step) -> bool:
        if any(dep not in st.done for dep in step.after):
            return False
        for dep in self._cross(st, step):
            if dep.target.step not in self.clusters[dep.target.cluster].done:
                return False
        for ref in _refs(step):
            if isinstance(ref, GatewayAddressRef) and not ref.fixed:
                if ref.after_step not in self.clusters[ref.cluster].done:
                    return False
            if isinstance(ref, KubeconfigRef):
                if ref.token_secret not in self.clusters[ref.target].secrets:
                    return False
        return True

    def _cross(self, st: _ClusterState, step: Step) -> list[CrossClusterDep]:
        return [d for d in self.order
                if d.waiter.cluster == st.plan.cluster and d.waiter.step == step.name]

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
            st = self.clusters[ref.cluster]
            svc = k8s.core.v1.Service.get(
                f"{ref.cluster}-{ref.service}-lb", f"{ref.namespace}/{ref.service}",
                opts=pulumi.ResourceOptions(parent=st.component, provider=st.provider,
                                            depends_on=st.done[ref.after_step]))
            cluster = ref.cluster
            self._gateway_addresses[cluster] = svc.status.apply(
                lambda status: _ingress_address(cluster, ref.spec_path, status))
        return self._gateway_addresses[ref.cluster]

    def _kubeconfig(self, ref: KubeconfigRef) -> pulumi.Output[str]:
        key = (ref.target, *ref.token_secret)
        if key not in self._kubeconfigs:
            st = self.clusters[ref.target]
            ns, name = ref.token_secret
            # Read back after creation: the token controller fills data.token/ca.crt.
            live = k8s.core.v1.Secret.get(
                f"{ref.target}-{name}-read", f"{ns}/{name}",
                opts=pulumi.ResourceOptions(parent=st.component, provider=st.provider,
                                            depends_on=[st.secrets[ref.token_secret]],
                                            additional_secret_outputs=["data"]))
            self._kubeconfigs[key] = pulumi.Output.secret(live.data.apply(
                lambda data: _token_kubeconfig(ref, data)))
        return self._kubeconfigs[key]

    def _build_step(self, st: _ClusterState, step: Step) -> list[pulumi.Resource]:
        cluster = st.plan.cluster
        deps = [r for dep in step.after for r in st.done[dep]]
        per_object: dict[tuple[str, str, str], list[pulumi.Resource]] = {}
        for cross in self._cross(st, step):
            if cross.waiter.obj is None:
                deps += self._targets(cross)
            else:
                per_object.setdefault(cross.waiter.obj, []).extend(self._targets(cross))
        opts = pulumi.ResourceOptions(parent=st.component, provider=st.provider,
                                      depends_on=deps)
        resolver = self._resolver()
        made: list[pulumi.Resource] = []
        if step.release is not None:
            rel = step.release
            for ref in walk_refs(rel.values):
                if isinstance(ref, PkiRef) and ref.secret:
                    raise ProgramError(f"{cluster}/{step.name}: refusing a private key in Helm values")
            made.append(k8s.helm.v3.Release(
                f"{cluster}-{step.name}",
                name=rel.release_name,
                chart=rel.chart,
                version=rel.version,
                namespace=rel.namespace,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=rel.repo_url),
                values=resolve(rel.values, resolver),
                opts=opts))
            return made
        plain = []
        for obj in step.objects:
            if is_secret(obj):
                meta = obj["metadata"]
                extra = per_object.get(("Secret", meta.get("namespace", "default"), meta["name"]))
                made.append(self._secret(st, obj, resolver, opts if not extra else
                                         pulumi.ResourceOptions.merge(
                                             opts, pulumi.ResourceOptions(depends_on=extra))))
            else:
                plain.append(resolve(obj, resolver))
        if plain:
            made.append(k8s.yaml.v2.ConfigGroup(f"{cluster}-{step.name}", objs=plain, opts=opts))
        return made

    def _secret(self, st: _ClusterState, obj: dict[str, Any], resolver: Callable[[Ref], Any],
                opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        string_data = obj.get("stringData")
        secret = k8s.core.v1.Secret(
            f"{st.plan.cluster}-secret-{ns}-{name}",
            metadata=meta,
            type=obj.get("type"),
            string_data=pulumi.Output.secret(resolve(string_data, resolver))
            if string_data else None,
            data=pulumi.Output.secret(obj["data"]) if obj.get("data") else None,
            # pulumi-kubernetes marks Secret data/stringData outputs secret itself.
            opts=opts)
        st.secrets[(ns, name)] = secret
        return secret


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


def build_environment(spec: Spec, plan: MeshPlan, base_dir: Path = Path(".")) -> MeshEnvironment:
    """Create every resource of the environment (call inside a Pulumi program)."""
    kubeconfigs = all_kubeconfigs(spec, base_dir)
    env = MeshEnvironment(spec.mesh.id, MeshEnvironmentArgs(spec, plan, kubeconfigs, base_dir))
    pulumi.export("rootCertPem", env.pki.root.cert_pem)
    pulumi.export("clusters", [cp.cluster for cp in plan.clusters])
    return env
