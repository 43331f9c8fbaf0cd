"""Disaster recovery: what a rebuilt cluster keeps, what is re-issued, which commands.

A cluster C was lost and rebuilt: a new API server, new ServiceAccount tokens,
maybe a new east-west gateway address; Pulumi state still lists C's objects.
From the plan alone (the same one the program consumes) this module works out:

- the identity that is kept: root, mesh ID, C's name, network, trust domain
  (and C's intermediate, unless the PKI store lost it);
- the credentials that involve C and so must be re-issued: every token Secret
  in C that other clusters read (Istio reader token, Linkerd remote-access
  token), every Secret elsewhere holding a kubeconfig for C (Istio remote
  secrets, Linkerd link credentials), and C's own such Secrets for its peers
  (gone with the cluster). Found by walking the plan's ``KubeconfigRef``s, so
  a new kind of credential is covered without touching this module;
- the objects of other clusters that read C's gateway address (a remote's
  ``remotePilotAddress``, Linkerd ``Link``s);
- the URNs for ``pulumi refresh`` / ``pulumi up`` (``stacks.pulumi_urns``).

Why refresh first: the state's copies of C's objects point at a cluster that is
gone. ``pulumi refresh`` with ``PULUMI_K8S_DELETE_UNREACHABLE=true`` drops them
(the provider's Read returns "deleted" for an unreachable cluster with that
option, and for objects the new cluster does not have: pulumi-kubernetes
``provider.go`` ``Read``), so ``pulumi up`` creates them on the new cluster
instead of failing to delete them from the old one (a Helm release cannot be
deleted from an unreachable cluster at all: ``provider.go`` ``Delete``).
C's provider gets a new kubeconfig; pulumi-kubernetes replaces a provider whose
active cluster changed (``provider.go`` ``DiffConfig``), which is harmless once
the state holds nothing of the old cluster.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from stacks.plan import (
    GatewayAddressRef,
    KubeconfigRef,
    MeshPlan,
    PkiRef,
    is_secret,
    walk_refs,
)
from stacks.pulumi_urns import (
    ProgramResource,
    config_group_child,
    program_resources,
    step_resource_name,
)


@dataclass(frozen=True)
class Credential:
    """A Secret re-issued because it involves the rebuilt cluster."""

    cluster: str                 # where the Secret lives
    namespace: str
    name: str
    why: str
    urn: str


@dataclass(frozen=True)
class Restart:
    """A peer's deployment that reads a re-issued credential only when it (re)starts."""

    cluster: str
    namespace: str
    deployment: str
    why: str
    kubectl: tuple[str, ...]     # --kubeconfig/--context that reach ``cluster``, as pulumi does
    inline: bool = False         # the stack file holds its kubeconfig: kubectl cannot name it


@dataclass(frozen=True)
class IntermediateStatus:
    """C's intermediate / issuer: kept or re-issued, and why (from the PKI store)."""

    reissued: bool
    why: str


@dataclass(frozen=True)
class DrPlan:
    cluster: str
    provider: str                                # istio / linkerd
    stack: str                                   # as passed to pulumi --stack
    kept: list[tuple[str, str]]                  # (what, value)
    intermediate: IntermediateStatus
    intermediate_urn: str | None     # None: the cluster's objects use no intermediate of its own
    reissued: list[Credential]
    provider_urn: str
    recreated: list[ProgramResource]             # every object of C, re-created on the new cluster
    address_readers: list[ProgramResource]       # objects elsewhere using C's gateway address
    refresh_targets: list[str] = field(default_factory=list)
    up_targets: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    # The rebuilt cluster, then every peer holding something re-issued or re-read for it:
    # `meshboot verify --cluster X` checks X's own view only (a primary's remote secrets
    # and its istiod's sync of them, a cluster's Links), so the peers are verified too.
    verify_clusters: list[str] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)


_CLUSTER_OBJECTS = ("release", "objects", "object", "secret", "read")


def dr_plan(plan: MeshPlan, cluster: str, stack: str, project: str, network: str,
            root: str, intermediate: IntermediateStatus) -> DrPlan:
    """What rebuilding ``cluster`` takes. ``stack``: ``dev`` or ``org/project/dev``.

    ``root``: the root's fingerprint and where it comes from, ``network``: the
    spec's; the caller reads them (stack file, PKI store). The rest comes from the plan.
    """
    plan.cluster(cluster)   # KeyError for an unknown cluster: the caller checks first
    resources = program_resources(plan, stack.rsplit("/", 1)[-1], project)
    by_step: dict[tuple[str, str], list[ProgramResource]] = {}
    secrets: dict[tuple[str, str, str], ProgramResource] = {}
    for r in resources:
        if r.cluster is not None and r.step is not None:
            by_step.setdefault((r.cluster, r.step), []).append(r)
        if r.kind == "secret" and r.cluster is not None and r.secret is not None:
            secrets[(r.cluster, *r.secret)] = r

    reissued: dict[str, Credential] = {}
    readers: dict[str, ProgramResource] = {}

    def add(holder: str, ns: str, name: str, why: str) -> None:
        r = secrets[(holder, ns, name)]
        reissued.setdefault(r.urn, Credential(holder, ns, name, why, r.urn))

    for other in plan.clusters:
        for step in other.steps:
            for obj in step.objects:
                refs = [ref for ref in walk_refs(obj) if isinstance(ref, KubeconfigRef)]
                meta = obj.get("metadata") or {}
                ns = meta.get("namespace", "default")
                for ref in refs:
                    if ref.target == cluster:
                        add(cluster, *ref.token_secret,
                            f"token of {ref.user} that other clusters use to read {cluster}: "
                            "the new cluster issues a new one")
                        if other.cluster != cluster and is_secret(obj):
                            add(other.cluster, ns, meta["name"],
                                f"kubeconfig for {cluster} (its new API server "
                                f"{ref.api_server} and new token)")
                    elif other.cluster == cluster and is_secret(obj):
                        add(cluster, ns, meta["name"],
                            f"kubeconfig for {ref.target}, re-created in the new {cluster}")
            if other.cluster == cluster:
                continue
            here = by_step.get((other.cluster, step.name), [])
            if step.release is not None and _reads_gateway(step.release.values, cluster):
                readers.update((r.urn, r) for r in here)
            group = step_resource_name(other.cluster, step.name)
            for obj in step.objects:
                if not is_secret(obj) and _reads_gateway(obj, cluster):
                    child = config_group_child(group, obj)[1]
                    readers.update((r.urn, r) for r in here
                                   if r.name in (group, child) and r.kind in ("objects", "object"))

    mine = [r for r in resources if r.cluster == cluster]
    provider_urn = next(r.urn for r in mine if r.kind == "provider")
    recreated = [r for r in mine if r.kind in _CLUSTER_OBJECTS]
    ca = next((r for r in resources if r.kind == "pki" and r.cluster == cluster), None)
    if ca is not None and not _uses_own_ca(plan, cluster):
        # An Istio remote: MeshPki issues it an intermediate like every cluster, but no
        # object of it holds one (no cacerts: its workloads' certificates come from its
        # primary's istiod), so there is nothing to keep, re-issue or target.
        ca = None
    kept = [("root CA", root),
            ("mesh ID", plan.mesh_id),
            ("cluster name", cluster),
            ("network", network),
            ("trust domain", plan.pki.trust_domain)]
    component = [r.urn for r in mine if r.kind == "component"]
    others = sorted({c.urn for c in reissued.values() if c.cluster != cluster} | set(readers))
    up = [*component, provider_urn, *(r.urn for r in recreated), *others]
    replace = []
    if ca is not None:
        up.insert(0, ca.urn)
        if intermediate.reissued:
            replace.append(ca.urn)
    restarts = _restarts(plan, [c for c in reissued.values() if c.cluster != cluster])
    touched = {c.cluster for c in reissued.values()} | {r.cluster for r in readers.values()}
    verify = [cluster, *(cp.cluster for cp in plan.clusters
                         if cp.cluster != cluster and cp.cluster in touched)]
    return DrPlan(
        cluster=cluster, provider=plan.provider, stack=stack, kept=kept,
        intermediate=intermediate, intermediate_urn=ca.urn if ca else None,
        reissued=sorted(reissued.values(), key=lambda c: (c.cluster != cluster, c.cluster,
                                                          c.namespace, c.name)),
        provider_urn=provider_urn, recreated=recreated,
        address_readers=sorted(readers.values(), key=lambda r: r.urn),
        refresh_targets=[r.urn for r in recreated], up_targets=up, replace=replace,
        verify_clusters=verify, restarts=restarts)


# Linkerd reads a peer's credentials Secret when a component starts, not when the Secret
# is updated in place (as `pulumi up` does): the destination controller's remote-discovery
# store handles a credentials Secret being added or deleted, never updated (linkerd2
# controller/api/destination/watcher/cluster_store.go: AddFunc/DeleteFunc only), and a
# Link's service mirror loads its clusterCredentialsSecret when the Link changes or it
# starts (multicluster/cmd/service-mirror/main.go loadCredentials); the chart names that
# deployment controller-<link> (multicluster/charts/linkerd-multicluster/templates/
# controller/deployment.yaml). Istio needs nothing: istiod swaps a changed remote
# secret's client itself (pkg/kube/multicluster/secretcontroller.go).
_REMOTE_KUBECONFIG = "mirror.linkerd.io/remote-kubeconfig"
_CLUSTER_NAME_LABEL = "multicluster.linkerd.io/cluster-name"
_DESTINATION = "linkerd-destination"


def _restarts(plan: MeshPlan, peer_credentials: list[Credential]) -> list[Restart]:
    out: dict[tuple[str, str, str], Restart] = {}
    order = {cp.cluster: i for i, cp in enumerate(plan.clusters)}
    for cred in peer_credentials:
        cp = plan.cluster(cred.cluster)
        conn = cp.connection
        kubectl = (*(("--kubeconfig", str(conn.kubeconfig.path)) if conn.kubeconfig.path
                     else ()),
                   *(("--context", conn.context) if conn.context else ()))
        inline = conn.kubeconfig.inline is not None
        for step in cp.steps:
            for obj in step.objects:
                meta = obj.get("metadata") or {}
                ns = meta.get("namespace", "default")
                if ns != cred.namespace:
                    continue
                if (is_secret(obj) and meta.get("name") == cred.name
                        and obj.get("type") == _REMOTE_KUBECONFIG
                        and _CLUSTER_NAME_LABEL in (meta.get("labels") or {})):
                    out.setdefault((cred.cluster, ns, _DESTINATION), Restart(
                        cred.cluster, ns, _DESTINATION,
                        f"remote discovery reads {cred.name} when it starts", kubectl,
                        inline))
                if (obj.get("kind") == "Link" and isinstance(obj.get("spec"), dict)
                        and obj["spec"].get("clusterCredentialsSecret") == cred.name):
                    name = f"controller-{meta['name']}"
                    out.setdefault((cred.cluster, ns, name), Restart(
                        cred.cluster, ns, name,
                        f"the service mirror of Link {meta['name']} reads {cred.name} "
                        "when it starts", kubectl, inline))
    return sorted(out.values(), key=lambda r: (order[r.cluster], r.namespace, r.deployment))


def _uses_own_ca(plan: MeshPlan, cluster: str) -> bool:
    cp = plan.cluster(cluster)
    values = [*(list(step.objects) for step in cp.steps),
              *(step.release.values for step in cp.steps if step.release is not None)]
    return any(isinstance(ref, PkiRef) and ref.cluster == cluster and ref.item != "root-cert"
               for ref in walk_refs(values))


def _reads_gateway(value: object, cluster: str) -> bool:
    return any(isinstance(ref, GatewayAddressRef) and ref.cluster == cluster
               for ref in walk_refs(value))


def sh(word: str) -> str:
    """``word`` as one POSIX shell word: single-quoted, so a URN's ``$`` and ``::`` stay
    literal (an embedded ``'`` closes, escapes and reopens the quote)."""
    return "'" + word.replace("'", "'\\''") + "'"


def commands(dr: DrPlan, config: str, verify: bool = True) -> list[str]:
    """The shell commands, in order, one string each (lines joined with `` \\``).

    ``config``: the stack file as the commands (run where Pulumi.yaml is) reach it.
    """
    stack = shlex.quote(dr.stack)
    refresh = ["PULUMI_K8S_DELETE_UNREACHABLE=true pulumi refresh --stack " + stack + " --yes"]
    refresh += [f"  --target {sh(u)}" for u in dr.refresh_targets]
    up = [f"pulumi up --stack {stack} --target-dependents"]
    up += [f"  --target {sh(u)}" for u in dr.up_targets]
    up += [f"  --replace {sh(u)}" for u in dr.replace]
    c = dr.cluster
    # `pulumi refresh` refuses the whole run if one --target is not in the state ("no
    # resource named '...' found": pulumi/pulumi pkg/engine/refresh.go calls checkTargets,
    # pkg/engine/deployment.go); `pulumi up` does not check (pkg/engine/update.go).
    out = [f"# forget {c}'s lost objects: unreachable (old cluster) or not found (new one).\n"
           "# If an earlier run already dropped some, pulumi stops with \"no resource named\n"
           "# '...' found\": delete those --target lines (none left: go on with the next step)\n"
           + " \\\n".join(refresh),
           f"# create them on the new {c}; re-issue the credentials that involve {c}\n"
           + " \\\n".join(up)]
    if dr.restarts:
        by: dict[tuple[str, str], list[Restart]] = {}
        for r in dr.restarts:
            by.setdefault((r.cluster, r.namespace), []).append(r)
        lines = [" ".join(["kubectl", *map(shlex.quote, rs[0].kubectl), "-n",
                           shlex.quote(ns), "rollout", "restart",
                           *(f"deployment/{shlex.quote(r.deployment)}" for r in rs)])
                 + (f"   # {where}'s kubeconfig is inline in the stack file: point kubectl "
                    "at it" if rs[0].inline else "")
                 for (where, ns), rs in by.items()]
        out.append(f"# Linkerd in the peers reads the new credentials for {c} only when it "
                   "starts\n" + "\n".join(lines))
    if verify:
        # --wait: the new cluster's rollouts and the peers' istiod/service mirror picking up
        # the new credentials are retried instead of reported as failures right away.
        clusters = " ".join(f"--cluster {shlex.quote(x)}" for x in dr.verify_clusters or [c])
        out.append(f"# check the live mesh: {c} and the clusters holding what changed for it\n"
                   f"meshboot verify --config {shlex.quote(config)} {clusters} --wait 5m")
    return out


def adopt_commands(plan: MeshPlan, stack: str, project: str) -> list[str]:
    """Pulumi state lost, clusters alive: re-adopt every live object meshboot created.

    Plain objects and Secrets are taken over by the run with
    ``MESHBOOT_ADOPT_EXISTING=1`` (the providers' ``upsertExistingObjects``).
    Helm releases are not objects the provider can upsert (Helm refuses to
    install a release name in use), so each is imported under its ClusterMesh
    component with its cluster's provider (``pulumi import TYPE NAME ID --parent
    name=URN --provider name=URN``; a Release's import ID is
    ``<namespace>/<release>``, pulumi-kubernetes ``helm_release.go`` ``Read``).
    """
    resources = program_resources(plan, stack.rsplit("/", 1)[-1], project)
    components = [r.urn for r in resources if r.kind == "component"]
    providers = {r.cluster: r.urn for r in resources if r.kind == "provider"}
    cms = {r.cluster: r.urn for r in resources
           if r.kind == "component" and r.cluster is not None}
    q = shlex.quote(stack)
    # `pulumi stack init` is `pulumi stack new`'s alias; with an existing stack file that
    # has an encryptionsalt, the passphrase provider keeps that salt (pulumi/pulumi
    # pkg/cmd/pulumi/stack/stack_new.go, pkg/secrets/passphrase/manager.go
    # NewPromptingPassphraseSecretsManager), so the file's secure: values still decrypt.
    out = ["# only if the backend has no such stack any more: an empty one, same passphrase\n"
           f"pulumi stack init --secrets-provider=passphrase {q}"]
    first = [f"MESHBOOT_ADOPT_EXISTING=1 pulumi up --stack {q}"]
    first += [f"  --target {sh(u)}" for u in [*components, *providers.values()]]
    out.append("# the components and one provider per cluster, nothing in the clusters yet\n"
               + " \\\n".join(first))
    imports = []
    for cp in plan.clusters:
        for step in cp.steps:
            rel = step.release
            if rel is None:
                continue
            r = next(x for x in resources if x.kind == "release" and x.cluster == cp.cluster
                     and x.step == step.name)
            # --generate-code=false: the program already declares the release (the
            # default prints generated code; pkg/cmd/pulumi/operations/import.go).
            imports.append(
                f"pulumi import --stack {q} --yes --protect=false --generate-code=false "
                f"{sh(r.type)} {r.name} {rel.namespace}/{rel.release_name} \\\n"
                f"  --parent {sh('cluster=' + cms[cp.cluster])} \\\n"
                f"  --provider {sh('k8s=' + providers[cp.cluster])}")
    out.append("# the Helm releases, as they are installed\n" + "\n".join(imports))
    out.append("# everything else, taken over where it exists (server-side apply upsert)\n"
               f"MESHBOOT_ADOPT_EXISTING=1 pulumi up --stack {q}")
    out.append("# back to refusing objects that already exist; expect no other change\n"
               f"pulumi up --stack {q}\npulumi preview --stack {q} --expect-no-changes")
    return out
