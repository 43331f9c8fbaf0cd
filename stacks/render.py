"""Render adapter: the plan as plain Kubernetes YAML, one directory per cluster.

Layout of ``<out>/<cluster>/``:

- ``NN-<step>.yaml``: the step's objects (multi-document), in plan order;
  Helm releases become Flux ``HelmRelease`` objects whose ``HelmRepository``
  sources are in ``00-helm-repositories.yaml``;
- ``secrets/<namespace>.<name>.yaml``: one Secret per file, mode 0600, in a
  0700 directory.

With ``--secrets-out DIR`` the Secrets go to ``DIR/<cluster>/<namespace>.<name>.yaml``
instead, so the output tree holds nothing that must not be committed.

Objects only ``pulumi up`` can create (cross-cluster credentials) are listed
in the summary, never written with a fake token. How the tree reaches the
disk (marker, refusals, lock, atomic swap) is :mod:`stacks.output`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clusters.errors import Problem, SpecError
from stacks.output import OutputFile, OutputTree
from stacks.plan import (
    GatewayAddressRef,
    HelmRelease,
    MeshPlan,
    PkiRef,
    Ref,
    Step,
    is_deferred,
    is_secret,
    resolve,
    walk_refs,
)

FLUX_INTERVAL = "10m"
REPO_INTERVAL = "1h"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        # Plans share sub-objects freely; rendered YAML never uses anchors/aliases.
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump_all(objs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         explicit_start=True, width=1_000_000)


class _Deferred(Exception):
    """Raised while resolving an object only ``pulumi up`` can build."""


@dataclass
class RenderSummary:
    out_dir: Path
    secrets_dir: Path | None = None   # --secrets-out
    objects: dict[str, int] = field(default_factory=dict)          # cluster -> count
    secrets: dict[str, list[str]] = field(default_factory=dict)    # cluster -> files
    deferred: dict[str, list[str]] = field(default_factory=dict)   # cluster -> descriptions
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"rendered {sum(self.objects.values())} objects for "
                 f"{len(self.objects)} clusters into {self.out_dir}"]
        for cluster, n in self.objects.items():
            secrets = self.secrets.get(cluster, [])
            where = (self.secrets_dir / cluster if self.secrets_dir is not None
                     else self.out_dir / cluster / "secrets")
            lines.append(f"  {cluster}: {n} objects, {len(secrets)} secrets in "
                         f"{where} (mode 0600)")
        deferred = [(c, d) for c, ds in self.deferred.items() for d in ds]
        if deferred:
            lines.append("created by `pulumi up` only (they need tokens of live clusters):")
            lines.extend(f"  {c}: {d}" for c, d in deferred)
        lines.extend(self.notes)
        return "\n".join(lines)


class PkiResolver:
    """Resolves ``PkiRef`` from a built hierarchy (``pki.hierarchy.MeshPKI``)."""

    def __init__(self, mesh_pki: Any) -> None:
        self.mesh_pki = mesh_pki

    def __call__(self, ref: PkiRef) -> str:
        root = self.mesh_pki.root
        if ref.item == "root-cert":
            return str(root.cert_pem)
        ca = self.mesh_pki.intermediates[ref.cluster]
        if ref.item == "ca-cert":
            return str(ca.cert_pem)
        if ref.item == "ca-key":
            return str(ca.key_pem)
        # cert-chain: the intermediate, then up to and including the root.
        return str(ca.chain_pem)


def check_renderable(plan: MeshPlan) -> list[Problem]:
    """Problems that stop render (not pulumi up), e.g. gateway addresses."""
    problems: list[Problem] = []
    for cp in plan.clusters:
        for step in cp.steps:
            items: list[Any] = [o for o in step.objects if not is_deferred(o)]
            if step.release is not None:
                items.append(step.release.values)
            for ref in walk_refs(items):
                if isinstance(ref, GatewayAddressRef) and not ref.fixed:
                    problems.append(Problem(
                        ref.spec_path,
                        f"render needs a fixed east-west gateway address for cluster "
                        f"{ref.cluster!r} (used by {cp.cluster}/{step.name}); `pulumi up` reads "
                        "it from the gateway's load balancer, render cannot"))
                if isinstance(ref, PkiRef) and ref.secret and step.release is not None:
                    raise AssertionError(f"{cp.cluster}/{step.name}: private key in Helm values")
    return problems


def render_files(plan: MeshPlan, pki_resolver: PkiResolver,
                 summary: RenderSummary) -> dict[str, tuple[str, bool]]:
    """relative path -> (content, is_secret), fully in memory."""

    def resolver(ref: Ref) -> Any:
        if isinstance(ref, PkiRef):
            return pki_resolver(ref)
        if isinstance(ref, GatewayAddressRef):
            return ref.fixed
        raise _Deferred()

    files: dict[str, tuple[str, bool]] = {}
    for cp in plan.clusters:
        count = 0
        repos: dict[tuple[str, str], dict[str, Any]] = {}
        secrets: list[str] = []
        deferred: list[str] = []
        for index, step in enumerate(cp.steps, start=1):
            docs: list[dict[str, Any]] = []
            if step.release is not None:
                rel = step.release
                repos.setdefault((rel.namespace, rel.repo_name), helm_repository(rel))
                docs.append(flux_helm_release(rel, step, cp.steps, resolver))
            for obj in step.objects:
                meta = obj["metadata"]
                ident = f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")
                try:
                    resolved = resolve(obj, resolver)
                except _Deferred:
                    deferred.append(ident)
                    continue
                if is_secret(obj):
                    path = f"{cp.cluster}/secrets/{meta.get('namespace', 'default')}.{meta['name']}.yaml"
                    files[path] = (dump_all([resolved]), True)
                    secrets.append(path)
                    count += 1
                else:
                    docs.append(resolved)
            if docs:
                files[f"{cp.cluster}/{index:02d}-{step.name}.yaml"] = (dump_all(docs), False)
                count += len(docs)
        if repos:
            files[f"{cp.cluster}/00-helm-repositories.yaml"] = (
                dump_all([repos[k] for k in sorted(repos)]), False)
            count += len(repos)
        summary.objects[cp.cluster] = count
        summary.secrets[cp.cluster] = secrets
        if deferred:
            summary.deferred[cp.cluster] = deferred
    return files


def helm_repository(rel: HelmRelease) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": rel.repo_name, "namespace": rel.namespace},
        "spec": {"url": rel.repo_url, "interval": REPO_INTERVAL},
    }


def flux_helm_release(rel: HelmRelease, step: Step, steps: list[Step],
                      resolver: Any) -> dict[str, Any]:
    by_name = {s.name: s for s in steps}
    depends = []
    for dep in step.after:
        dep_rel = by_name[dep].release
        if dep_rel is not None:
            depends.append({"name": dep_rel.release_name, "namespace": dep_rel.namespace})
    spec: dict[str, Any] = {
        "releaseName": rel.release_name,
        "interval": FLUX_INTERVAL,
        "chart": {"spec": {
            "chart": rel.chart,
            "version": rel.version,
            "sourceRef": {"kind": "HelmRepository", "name": rel.repo_name,
                          "namespace": rel.namespace},
        }},
        "install": {"remediation": {"retries": 3}},
        "upgrade": {"remediation": {"retries": 3}},
    }
    if depends:
        spec["dependsOn"] = depends
    spec["values"] = resolve(rel.values, resolver)
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": rel.release_name, "namespace": rel.namespace},
        "spec": spec,
    }


def split_outputs(files: dict[str, tuple[str, bool]], secrets_apart: bool
                  ) -> tuple[dict[str, OutputFile], dict[str, OutputFile]]:
    """(main tree, secrets tree): ``<c>/secrets/<ns>.<name>.yaml`` -> ``<c>/<ns>.<name>.yaml``."""
    main: dict[str, OutputFile] = {}
    secrets: dict[str, OutputFile] = {}
    for rel, (content, secret) in files.items():
        f = OutputFile(content.encode(), secret)
        if secret and secrets_apart:
            cluster, _, name = rel.partition("/secrets/")
            secrets[f"{cluster}/{name}"] = f
        else:
            main[rel] = f
    return main, secrets


def render_outputs(plan: MeshPlan, mesh_pki: Any, source: str, tree: OutputTree,
                   secrets_tree: OutputTree | None, marker: dict[str, Any]) -> RenderSummary:
    """Check, build in memory, then swap in the new tree(s) (see :mod:`stacks.output`)."""
    problems = check_renderable(plan)
    if problems:
        raise SpecError(source, problems)
    summary = RenderSummary(out_dir=tree.shown, secrets_dir=secrets_tree.shown
                            if secrets_tree else None)
    files = render_files(plan, PkiResolver(mesh_pki), summary)
    main, secrets = split_outputs(files, secrets_tree is not None)
    if secrets_tree is not None:
        secrets_tree.commit(secrets, {**marker, "secrets": "this tree"})
        main_marker = {**marker, "secrets": str(secrets_tree.shown)}
    else:
        main_marker = {**marker, "secrets": "<cluster>/secrets"}
    tree.commit(main, main_marker)
    summary.notes.extend(plan.notes)
    return summary
