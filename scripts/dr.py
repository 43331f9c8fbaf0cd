"""``meshboot dr plan``: what rebuilding a lost cluster keeps, re-issues and runs.

Reads the stack file and the PKI store (never writes either) and prints the
identity that is kept, the credentials that are re-issued, and the exact
``pulumi refresh`` / ``pulumi up`` commands with the URNs meshboot's program
uses (``stacks.pulumi_urns``), then ``meshboot verify``. Refuses (exit 2) when
the mesh's identity could not be kept: no root in the stack file nor in the
PKI store.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from scripts.cli import EXIT_SPEC, _load, _passphrase, _plan, check_cluster_names, default_pki_dir

if TYPE_CHECKING:
    from clusters.loader import LoadedSpec


@click.group()
def dr() -> None:
    """Disaster recovery: rebuild a lost cluster without losing the mesh's identity."""


@dr.command("plan")
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config; put the "
                   "rebuilt cluster's new apiServer/context/kubeconfig in it first.")
@click.option("--cluster", "clusters", required=True, multiple=True,
              help="The cluster that was lost and rebuilt (one per run).")
@click.option("--pki-dir", "pki_dir", type=click.Path(path_type=Path), default=None,
              help="Local PKI store (default: .meshboot/<env>/pki next to the stack file).")
@click.option("--stack", "stack", default=None,
              help="Pulumi stack name for the commands (default: <env> of Pulumi.<env>.yaml; "
                   "org/project/stack is accepted, URNs use the last part).")
@click.option("--project", "project", default=None,
              help="Pulumi project name in the URNs (default: `name` of the Pulumi.yaml next "
                   "to the stack file, else meshboot).")
def dr_plan_cmd(config: Path, clusters: tuple[str, ...], pki_dir: Path | None,
                stack: str | None, project: str | None) -> None:
    """Print what rebuilding CLUSTER keeps and re-issues, and the commands to run."""
    if len(clusters) != 1:  # click would silently keep the last one
        click.echo(f"error: --cluster: one cluster per plan (got {', '.join(clusters)}); run "
                   "`meshboot dr plan` once per lost cluster", err=True)
        sys.exit(EXIT_SPEC)
    cluster = clusters[0]
    from pki.ca import certs_from_pem, fingerprint
    from pki.store import PkiStore, PkiStoreError
    from stacks.dr import IntermediateStatus, commands, dr_plan

    loaded = _load(config)
    check_cluster_names(loaded, [cluster])
    plan = _plan(loaded)
    pki_dir = pki_dir if pki_dir is not None else default_pki_dir(loaded)
    store = PkiStore(pki_dir, _passphrase())
    issuer = "identity issuer" if plan.provider == "linkerd" else "intermediate CA"
    try:
        # A store that render would refuse (another mesh, another root) says nothing about
        # this mesh's intermediates, wherever the root comes from.
        problems = store.check(plan.pki) if store.exists() else []
        if problems:
            text = "; ".join(problems)
            raise PkiStoreError(text if str(pki_dir) in text else
                                f"{pki_dir} belongs to another mesh or configuration: {text}")
        if plan.pki.imported_root is not None:
            root_fp = fingerprint(certs_from_pem(plan.pki.imported_root[0])[0])
            root = f"SHA-256 {root_fp} (kept: {loaded.source} meshboot:pki.rootCa)"
        elif store.exists():
            stored = store.read_root()
            assert stored is not None
            root = f"SHA-256 {fingerprint(stored.cert)} (kept: the PKI store {pki_dir})"
        else:
            click.echo(
                f"error: {loaded.source}: the mesh's identity cannot be kept: no root CA in the "
                f"stack file (meshboot:pki.rootCa) nor in the PKI store {pki_dir}. Rebuilding "
                f"{cluster} now would give it a root the other clusters do not trust. Put the "
                "deployed root into the stack file first: `pulumi stack export | meshboot pki "
                f"init --config {loaded.source} --from-state -` (deployed with pulumi up) or "
                f"`meshboot pki init --config {loaded.source} --from-store DIR` (deployed from "
                "renders); see `meshboot pki init --help`.", err=True)
            sys.exit(EXIT_SPEC)
        if store.exists():
            kept = store.has_intermediate(cluster)
            status = IntermediateStatus(
                reissued=not kept,
                why=(f"kept: the PKI store {pki_dir} has it" if kept else
                     f"re-issued under the same root: the PKI store {pki_dir} has no entry for "
                     f"{cluster}; `pulumi up --replace` issues a new one in Pulumi state too"))
        else:
            status = IntermediateStatus(
                reissued=False,
                why=f"kept in Pulumi state (no PKI store at {pki_dir}); `pulumi up` keeps it")
    except PkiStoreError as err:
        click.echo(f"error: PKI store: {err}", err=True)
        sys.exit(EXIT_SPEC)
    except ValueError as err:   # an imported root that is not a certificate
        click.echo(f"error: {loaded.source}: meshboot:pki.rootCa: {err}", err=True)
        sys.exit(EXIT_SPEC)

    spec_cluster = loaded.spec.cluster(cluster)
    where_pulumi, stack_name, project_name = _pulumi_names(loaded, stack, project)
    dr = dr_plan(plan, cluster, stack_name, project_name, spec_cluster.network, root, status)
    conn = plan.cluster(cluster).connection
    where = conn.context or "the kubeconfig's current context"
    click.echo(f"Rebuilding {cluster} of mesh {plan.mesh_id} ({plan.provider}), "
               f"stack {stack_name}: using apiServer {conn.api_server}, {where}.")
    click.echo(f"First put {cluster}'s new apiServer, context/kubeconfig (and "
               "eastWestGateway.address if it changed) into "
               f"{loaded.source}, then run this again.\n")
    click.echo("Kept (the mesh's identity):")
    for what, value in dr.kept:
        click.echo(f"  {what:<16} {value}")
    if dr.intermediate_urn is None:
        source = (f" (its workloads' certificates come from {spec_cluster.primary}'s istiod)"
                  if spec_cluster.primary else "")
        click.echo(f"  {issuer:<16} none: {cluster} holds no CA of its own{source}")
    elif not status.reissued:
        click.echo(f"  {issuer:<16} {status.why}")
    click.echo("\nRe-issued (credentials that involve " + cluster + "):")
    if status.reissued and dr.intermediate_urn:
        click.echo(f"  {issuer} of {cluster}: {status.why}\n      {dr.intermediate_urn}")
    for c in dr.reissued:
        click.echo(f"  Secret {c.namespace}/{c.name} in {c.cluster}: {c.why}\n      {c.urn}")
    if not dr.reissued:
        click.echo("  none: no other cluster reads this one, and it reads none")
    click.echo("\nAlso changed:")
    click.echo(f"  provider of {cluster}: new kubeconfig (new API server and credentials); "
               "pulumi-kubernetes replaces a provider whose cluster changed\n"
               f"      {dr.provider_urn}")
    click.echo(f"  {len(dr.recreated)} resources of {cluster} are re-created on the new cluster "
               "with the same inputs (its namespaces, Helm releases, Secrets, mesh objects)")
    for r in dr.address_readers:
        click.echo(f"  {r.name} in {r.cluster}: uses {cluster}'s east-west gateway address "
                   f"(updated if it changed)\n      {r.urn}")
    if dr.restarts:
        click.echo("\nRestarted (Linkerd reads a peer's credentials when it starts, not when "
                   "the Secret changes):")
        for restart in dr.restarts:
            click.echo(f"  deployment {restart.namespace}/{restart.deployment} in "
                       f"{restart.cluster}: {restart.why}")
    click.echo(f"\nCommands ({_run_in(where_pulumi, loaded.base_dir)}, "
               "PULUMI_CONFIG_PASSPHRASE set):")
    # The commands run where Pulumi.yaml is: the stack file as seen from there.
    config_there = (os.path.relpath(Path(loaded.source).resolve(), where_pulumi.resolve())
                    if where_pulumi is not None else loaded.source)
    for i, command in enumerate(commands(dr, config_there), start=1):
        click.echo(f"\n# {i}. {command[2:]}")


@dr.command("adopt")
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
@click.option("--stack", "stack", default=None,
              help="Pulumi stack name (default: <env> of Pulumi.<env>.yaml).")
@click.option("--project", "project", default=None,
              help="Pulumi project name in the URNs (default: from Pulumi.yaml, else meshboot).")
def dr_adopt_cmd(config: Path, stack: str | None, project: str | None) -> None:
    """Pulumi state lost, clusters alive: print the commands that re-adopt the live mesh."""
    from stacks.dr import adopt_commands

    loaded = _load(config)
    plan = _plan(loaded)
    where_pulumi, stack_name, project_name = _pulumi_names(loaded, stack, project)
    if plan.pki.imported_root is None:
        click.echo(f"error: {loaded.source}: no meshboot:pki.rootCa: with the state gone, "
                   "the next `pulumi up` would generate a new root and the running clusters "
                   "would stop trusting each other. Put the deployed root into the stack file "
                   f"first (`meshboot pki init --config {loaded.source} --from-store DIR`, or "
                   "from a `pulumi stack export` backup with --from-state).", err=True)
        sys.exit(EXIT_SPEC)
    click.echo(f"Re-adopting mesh {plan.mesh_id} ({plan.provider}) into an empty stack "
               f"{stack_name}. A `pulumi stack export` backup is simpler: `pulumi stack import "
               "--file BACKUP` then `pulumi refresh`. Otherwise, with PULUMI_CONFIG_PASSPHRASE "
               f"set, {_run_in(where_pulumi, loaded.base_dir)}:")
    for i, command in enumerate(adopt_commands(plan, stack_name, project_name), start=1):
        click.echo(f"\n# {i}. {command[2:]}")


# Pulumi's names: project and stack names are 1-100 of [A-Za-z0-9_.-] (pulumi/pulumi
# sdk/go/common/tokens/project.go ValidateProjectName, tokens/stack_name.go
# ParseStackName); a stack may be given as [org/[project/]]stack, whose project part must be
# the project's (pkg/backend/httpstate/backend.go ValidateStackName).
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def _pulumi_names(loaded: LoadedSpec, stack: str | None,
                  project: str | None) -> tuple[Path | None, str, str]:
    """(directory of Pulumi.yaml or None, stack, project) for the URNs and commands; exit 2
    naming every name Pulumi would refuse, so no printed command or URN is one it rejects."""
    where = _project_dir(loaded.base_dir)
    problems = []
    project_name = project or "meshboot"
    if project is None and where is not None:
        found, problem = _project(where)
        project_name = found or project_name
        if problem:
            problems.append(problem)
    stack_name = stack or loaded.env
    # Pulumi.yaml's own name is taken as the CLI takes it (it does not enforce the rule:
    # sdk/go/common/workspace/project.go Validate); --project is checked.
    if project is not None and not _NAME.fullmatch(project):
        problems.append(f"--project: {project!r} is not a Pulumi project name (1-100 "
                        "letters, digits, '-', '_', '.')")
    parts = stack_name.split("/")
    src = "--stack" if stack else f"{loaded.source}: the stack name from the file name"
    if len(parts) > 3 or not all(_NAME.fullmatch(p) for p in parts):
        problems.append(f"{src}: {stack_name!r} is not a Pulumi stack name ([org/[project/]]"
                        "stack, each 1-100 letters, digits, '-', '_', '.')")
    elif len(parts) == 3 and parts[1] != project_name:
        problems.append(f"{src}: {stack_name!r} names project {parts[1]!r}, but the URNs are "
                        f"of project {project_name!r} (Pulumi.yaml `name`, or --project)")
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_SPEC)
    return where, stack_name, project_name


def _project_dir(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding Pulumi.yaml: where the Pulumi CLI
    finds the project when run there (pulumi/pulumi sdk/go/common/workspace/paths.go
    DetectProjectPathFrom walks up the same way; a Pulumi.yaml with ``stackConfigDir``
    keeps its stack files in a subdirectory)."""
    for d in [start, *start.resolve().parents]:
        if (d / "Pulumi.yaml").is_file() or (d / "Pulumi.yml").is_file():
            return d
    return None


def _run_in(where: Path | None, base_dir: Path) -> str:
    if where is None:
        return (f"run them where your Pulumi.yaml is; none found at or above {base_dir}, so "
                "the URNs assume project meshboot: --project to set it")
    return ("run them here, where Pulumi.yaml is" if where.resolve() == Path.cwd().resolve()
            else f"run them in {where}, where Pulumi.yaml is")


def _project(base_dir: Path) -> tuple[str | None, str | None]:
    """(the Pulumi project's ``name``, which URNs hold, from the Pulumi.yaml in ``base_dir``;
    the problem when there is none): the Pulumi CLI refuses a Pulumi.yaml it cannot parse
    or without a ``name`` (sdk/go/common/workspace/project.go ``Validate``: "project is
    missing a 'name' attribute"), so URNs of a made-up project would match nothing."""
    import yaml

    for file_name in ("Pulumi.yaml", "Pulumi.yml"):
        path = base_dir / file_name
        if not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_bytes())
        except (OSError, yaml.YAMLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            return None, f"{path}: cannot read the project's name ({reason}); or pass --project"
        name = doc.get("name") if isinstance(doc, dict) else None
        if isinstance(name, str) and name:
            return name, None
        return None, (f"{path}: name: the project's name is missing or not a string "
                      "(the Pulumi CLI refuses such a project); fix it or pass --project")
    return None, None
