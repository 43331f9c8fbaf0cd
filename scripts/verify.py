"""``meshboot verify``: is the live mesh what the spec says?

    meshboot verify --config Pulumi.dev.yaml [--cluster C ...] [--wait 10m] [--json]

Reads every cluster through the Kubernetes API (the official client, each
cluster's kubeconfig/context as ``pulumi up`` uses them) and compares it with
the plan (:mod:`stacks.verify`); retries what is not ready yet until
``--wait`` (:mod:`stacks.verify_run`). Read-only: it never writes to a
cluster, the stack file or the PKI store.

Exit 0 when no check fails (warnings do not), 1 when one fails, 2 on bad
input (spec errors, unknown --cluster, bad --wait, an unusable kubeconfig).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from clusters.loader import LoadedSpec

EXIT_SPEC = 2
COLUMNS = ("cluster", "check", "status", "reason", "fix")


def root_pem(loaded: LoadedSpec, imported: tuple[str, str] | None, pki_dir: Path) -> str | None:
    """The mesh root's certificate PEM: the imported root, else the PKI store's
    ``root/cert.pem`` (checked against meta.json's fingerprint), else None. Reads only."""
    from pki.ca import certs_from_pem, certs_to_pem, fingerprint

    if imported is not None:
        # As render and Pulumi put it in the cluster: the certificate re-encoded
        # (pki.ca.CA.cert_pem), which is what Linkerd's trust-root hash covers.
        return certs_to_pem(certs_from_pem(imported[0]))
    meta_path, cert_path = pki_dir / "meta.json", pki_dir / "root" / "cert.pem"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        pem = cert_path.read_text()
        certs = certs_from_pem(pem)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"PKI store {pki_dir}: cannot read its root ({err})") from None
    if not isinstance(meta, dict) or len(certs) != 1 \
            or meta.get("root_fingerprint") != fingerprint(certs[0]):
        raise click.ClickException(f"PKI store {pki_dir}: root/cert.pem does not match meta.json")
    return certs_to_pem(certs)


def table(rows: list[dict[str, str]]) -> str:
    """Aligned columns; the last (fix) is not padded."""
    head = {c: c.upper() for c in COLUMNS}
    lines = [head, *rows]
    widths = {c: max(len(str(r[c])) for r in lines) for c in COLUMNS[:-1]}
    out = []
    for r in lines:
        cells = [str(r[c]).ljust(widths[c]) for c in COLUMNS[:-1]] + [str(r["fix"])]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


@click.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
@click.option("--cluster", "only", multiple=True, metavar="NAME",
              help="Verify only this cluster (repeatable). Default: every cluster.")
@click.option("--wait", "wait", default="0", show_default=True, metavar="DURATION",
              help="Retry checks that are not ready yet (rollouts, load-balancer addresses, "
                   "istiod syncing) for up to this long: 30s, 10m, 1h; 0 = no retries.")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print the checks as a JSON list (cluster, check, status, reason, fix, attempts).")
@click.option("--pki-dir", "pki_dir", type=click.Path(path_type=Path), default=None,
              help="PKI store holding the root (default: .meshboot/<env>/pki next to the stack "
                   "file); read only. An imported root (meshboot:pki.rootCa) needs none.")
@click.option("--timeout", "timeout", type=click.FloatRange(min=0.1, max=300), default=10.0,
              show_default=True, help="Seconds before one request to an API server gives up.")
def verify(config: Path, only: tuple[str, ...], wait: str, as_json: bool, pki_dir: Path | None,
           timeout: float) -> None:
    """Check the live mesh against the spec, cluster by cluster (read-only).

    Istio: istiod ready, cacerts chains to the spec's root, the istio-system
    network label, east-west gateway addresses, remote secrets and istiod's
    sync status of each (/debug/clusterz), each service's endpoints known to
    the istiod serving its callers, the roots proxies trust. Linkerd: control
    plane and identity ready, trust roots, Links and their credentials,
    gateway addresses and probes, mirror services, pods' trust-root hashes.
    Both: nodes' region/zone labels, and the same trust bundle everywhere.
    """
    from pki.hierarchy import rotation_bundles
    from scripts.cli import _fail_spec, _load, check_cluster_names, default_pki_dir
    from stacks.build import build_plan
    from stacks.plan import pki_pem
    from stacks.verify import verifier
    from stacks.verify_run import Runner, parse_duration

    try:
        seconds = parse_duration(wait)
    except ValueError as err:
        click.echo(f"error: --wait: {err}", err=True)
        sys.exit(EXIT_SPEC)
    loaded = _load(config)
    check_cluster_names(loaded, only)
    from clusters.errors import SpecError

    try:
        plan = build_plan(loaded.spec, source=loaded.source, base_dir=loaded.base_dir)
    except SpecError as err:
        _fail_spec(err)
        return
    try:
        root = root_pem(loaded, plan.pki.imported_root, pki_dir or default_pki_dir(loaded))
    except click.ClickException as err:
        click.echo(f"error: {err.message}", err=True)
        sys.exit(EXIT_SPEC)
    if root is None and not as_json:
        click.echo(f"warning: no PKI store at {pki_dir or default_pki_dir(loaded)} and no imported "
                   "root: roots are compared across clusters only", err=True)
    # During a root rotation each cluster's expected bundle is its phase's (pki.rotation).
    bundles = rotation_bundles(plan.pki)
    trust = (lambda ref: pki_pem(ref, root, {}, bundles)) if root is not None else None
    clusters = [c for c in loaded.spec.cluster_names if not only or c in only]
    runner = Runner(verifier(loaded.spec, plan, trust), loaded.base_dir, wait=seconds,
                    timeout=timeout)
    rows = runner.run(clusters)
    docs = [r.as_dict() for r in rows]
    if as_json:
        click.echo(json.dumps(docs, indent=2))
    else:
        click.echo(table(docs))
        fails = sum(r.status == "fail" for r in rows)
        warns = sum(r.status == "warn" for r in rows)
        click.echo(f"\n{len(rows)} checks: {fails} failed, {warns} warnings")
    if any(r.config_error for r in rows):
        sys.exit(EXIT_SPEC)
    sys.exit(1 if any(r.status == "fail" for r in rows) else 0)
