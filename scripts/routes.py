"""``meshboot routes``: where requests to a service go, read from rendered output.

    meshboot routes --dir out/dev/east --service reviews.bookinfo \\
        [--header x-canary=1 ...] [--path /api] [--method GET] [--json]

Interprets the rendered VirtualServices and DestinationRules of one cluster
(first match wins; exact/prefix/regex header and URI matches; sourceLabels;
weights; subsets; localityLbSetting), never the spec. Exit 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from stacks.istio.routes import (
    CLUSTER_LABEL,
    Request,
    RoutesError,
    explain,
    format_text,
    load_objects,
    primary_of,
    resolve_service,
)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{v!r}: expected name=value", param_hint=what)
        out[name.strip()] = value
    return out


@click.command()
@click.option("--dir", "directory", required=True, type=click.Path(path_type=Path),
              help="Rendered directory of the calling cluster (out/<env>/<cluster>).")
@click.option("--service", required=True,
              help="Service: name, name.namespace or its FQDN.")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="Request header (repeatable).")
@click.option("--path", "path", default="/", show_default=True, help="Request path.")
@click.option("--method", default="GET", show_default=True, help="HTTP method.")
@click.option("--source-cluster", default=None,
              help="Calling cluster (default: the directory's cluster).")
@click.option("--source-label", "source_labels", multiple=True, metavar="NAME=VALUE",
              help="Extra labels of the calling workload (repeatable).")
@click.option("--source-namespace", default=None, help="Namespace of the calling workload.")
@click.option("--source-region", default=None,
              help="Region of the caller, to print its locality failover order.")
@click.option("--port", type=int, default=None, help="Service port the call is made to.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def routes(directory: Path, service: str, headers: tuple[str, ...], path: str, method: str,
           source_cluster: str | None, source_labels: tuple[str, ...], source_namespace: str | None,
           source_region: str | None, port: int | None, as_json: bool) -> None:
    """Show where requests to a service go: matched route, shares, timeout, retries, failover."""
    try:
        plain = load_objects(directory)
        cluster = directory.resolve().name
        config_cluster = primary_of(plain) or cluster
        config = plain if config_cluster == cluster else \
            load_objects(directory.resolve().parent / config_cluster)
        caller = source_cluster or cluster
        labels = {CLUSTER_LABEL: caller, **_pairs(source_labels, "--source-label")}
        req = Request(method=method.upper(), path=path, headers=_pairs(headers, "--header"),
                      source_labels=labels, source_namespace=source_namespace, port=port)
        host = resolve_service(service, config + plain)
        result = explain(config, host, req, source_region=source_region, plain=plain)
    except RoutesError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    result = {"cluster": caller, "configCluster": config_cluster,
              "request": {"method": req.method, "path": req.path, "headers": req.headers,
                          "sourceLabels": req.source_labels}, **result}
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        click.echo(format_text(result, caller, config_cluster))
