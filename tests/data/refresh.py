"""Refresh ``tests/data/schemas`` from the upstream CRD manifests meshboot's versions ship.

Usage (from the repository root; needs access to GitHub)::

    .venv/bin/python tests/data/refresh.py           # rewrite the schemas and INDEX.tsv
    .venv/bin/python tests/data/refresh.py --check   # exit 1 if the files would change

The tests keep only the custom resource kinds meshboot renders (``WANTED``), one
``<group>/<kind>_<version>.json`` per served version: the CRD's
``openAPIV3Schema`` unchanged, as ``json.dumps(indent=1, sort_keys=True)``.
tests/support/validation.py makes it strict when it loads it. To validate a new
kind, add it to ``WANTED`` (and its manifest to ``SOURCES`` if it is new), run
this script and commit the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
INDEX = "INDEX.tsv"

if str(REPO) not in sys.path:  # run as a script from a source tree
    sys.path.insert(0, str(REPO))

from clusters.spec import DEFAULT_VERSIONS  # noqa: E402

ISTIO = DEFAULT_VERSIONS["istio"]
LINKERD = DEFAULT_VERSIONS["linkerd"]
# Flux: the commits the schemas were first taken from (meshboot does not pin Flux;
# HelmRelease v2 and HelmRepository v1 are the APIs it renders).
HELM_CONTROLLER = "0f61a8607a62be64638f2f912d9487e653960a6e"
SOURCE_CONTROLLER = "39b711b111fa906c3db0a424e252a5d12e48646d"
# Flagger: the release stacks/delivery/flagger.py writes Canaries for (it is not installed
# by meshboot, so no chart pins it).
FLAGGER = "v1.44.0"
RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Source:
    """Upstream manifests holding CRDs, and how INDEX.tsv names their origin."""

    origin: str
    urls: tuple[str, ...]


_LINKERD_CRDS = f"{RAW}/linkerd/linkerd2/{LINKERD}/charts/linkerd-crds/templates"
SOURCES: tuple[Source, ...] = (
    # istio/istio manifests/charts/base/files/crd-all.gen.yaml: every Istio CRD, plain YAML.
    Source(f"istio/istio@{ISTIO} manifests/charts/base/files/crd-all.gen.yaml",
           (f"{RAW}/istio/istio/{ISTIO}/manifests/charts/base/files/crd-all.gen.yaml",)),
    # Linkerd's CRD chart (Helm templates; the template lines are only in metadata) with
    # the Gateway API CRDs it bundles (v1.1.1, experimental channel: what a Linkerd
    # install puts in a cluster), and the multicluster extension's Link CRD.
    Source(f"linkerd/linkerd2@{LINKERD} charts/linkerd-crds + multicluster link-crd",
           (f"{_LINKERD_CRDS}/gateway.networking.k8s.io_httproutes.yaml",
            f"{_LINKERD_CRDS}/gateway.networking.k8s.io_grpcroutes.yaml",
            f"{_LINKERD_CRDS}/policy/authorization-policy.yaml",
            f"{_LINKERD_CRDS}/policy/httproute.yaml",
            f"{_LINKERD_CRDS}/policy/meshtls-authentication.yaml",
            f"{_LINKERD_CRDS}/policy/network-authentication.yaml",
            f"{_LINKERD_CRDS}/policy/server.yaml",
            f"{RAW}/linkerd/linkerd2/{LINKERD}/multicluster/charts/linkerd-multicluster/"
            "templates/link-crd.yaml")),
    Source(f"fluxcd/helm-controller@{HELM_CONTROLLER[:12]} (main, 2026-07-23) config/crd/bases",
           (f"{RAW}/fluxcd/helm-controller/{HELM_CONTROLLER}/config/crd/bases/"
            "helm.toolkit.fluxcd.io_helmreleases.yaml",)),
    Source(f"fluxcd/source-controller@{SOURCE_CONTROLLER[:12]} (main, 2026-07-02) config/crd/bases",
           (f"{RAW}/fluxcd/source-controller/{SOURCE_CONTROLLER}/config/crd/bases/"
            "source.toolkit.fluxcd.io_helmrepositories.yaml",)),
    # fluxcd/flagger artifacts/flagger/crd.yaml: every Flagger CRD, plain YAML.
    Source(f"fluxcd/flagger@{FLAGGER} artifacts/flagger/crd.yaml",
           (f"{RAW}/fluxcd/flagger/{FLAGGER}/artifacts/flagger/crd.yaml",)),
)

# "<group>/<version> <Kind>": the custom resources meshboot renders (and tests validate).
WANTED: frozenset[str] = frozenset({
    "networking.istio.io/v1 DestinationRule",
    "networking.istio.io/v1 Gateway",
    "networking.istio.io/v1 ServiceEntry",
    "networking.istio.io/v1 Sidecar",
    "networking.istio.io/v1 VirtualService",
    "security.istio.io/v1 AuthorizationPolicy",
    "security.istio.io/v1 PeerAuthentication",
    "security.istio.io/v1 RequestAuthentication",
    "telemetry.istio.io/v1 Telemetry",
    "gateway.networking.k8s.io/v1 GRPCRoute",
    "gateway.networking.k8s.io/v1 HTTPRoute",
    "policy.linkerd.io/v1alpha1 AuthorizationPolicy",
    "policy.linkerd.io/v1alpha1 MeshTLSAuthentication",
    "policy.linkerd.io/v1alpha1 NetworkAuthentication",
    "policy.linkerd.io/v1beta3 HTTPRoute",
    "policy.linkerd.io/v1beta3 Server",
    "multicluster.linkerd.io/v1alpha3 Link",
    "helm.toolkit.fluxcd.io/v2 HelmRelease",
    "source.toolkit.fluxcd.io/v1 HelmRepository",
    "flagger.app/v1beta1 Canary",
    "flagger.app/v1beta1 MetricTemplate",
})


class RefreshError(Exception):
    """An upstream manifest could not be had or did not hold what was expected."""


def manifest_documents(text: str) -> Iterator[dict[str, Any]]:
    """The YAML documents of a manifest, Helm template lines (``{{ ... }}``) dropped.

    In the CRD templates these lines are only chart conditionals and metadata
    labels/annotations; no schema line holds a template expression.
    """
    plain = "\n".join(line for line in text.splitlines() if "{{" not in line)
    for doc in yaml.safe_load_all(plain):
        if isinstance(doc, dict):
            yield doc


def schema_path(group: str, kind: str, version: str) -> str:
    """The file tests/support/validation.py looks up for ``<group>/<version>`` ``kind``."""
    return f"{group}/{kind.lower()}_{version}.json"


def extract_schemas(documents: Iterable[dict[str, Any]],
                    wanted: Iterable[str] | None = None) -> dict[str, str]:
    """schema file path -> file content, for each served version of each CRD document.

    ``wanted`` limits the result to ``"<group>/<version> <Kind>"`` entries.
    """
    keep = None if wanted is None else set(wanted)
    out: dict[str, str] = {}
    for doc in documents:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec") or {}
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec.get("versions") or ():
            name = version["name"]
            if not version.get("served", True) or (keep is not None and
                                                   f"{group}/{name} {kind}" not in keep):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                raise RefreshError(f"{group}/{name} {kind}: the CRD has no openAPIV3Schema")
            out[schema_path(group, kind, name)] = json.dumps(schema, indent=1, sort_keys=True) + "\n"
    return out


def download(url: str, timeout: float = 60) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed https URLs)
            return resp.read().decode()
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RefreshError(f"cannot download {url}: {reason}") from exc


def collect(sources: Iterable[Source] = SOURCES, wanted: Iterable[str] = WANTED,
            fetch: Any = download) -> tuple[dict[str, str], dict[str, str]]:
    """(schema files, INDEX.tsv origin per file) from every source."""
    wanted = set(wanted)
    files: dict[str, str] = {}
    origins: dict[str, str] = {}
    for source in sources:
        docs = [doc for url in source.urls for doc in manifest_documents(fetch(url))]
        for path, content in extract_schemas(docs, wanted).items():
            files[path] = content
            origins[path] = source.origin
    missing = sorted(entry for entry in wanted if entry_path(entry) not in files)
    if missing:
        raise RefreshError("not found in any source: " + ", ".join(missing))
    return files, origins


def entry_path(entry: str) -> str:
    api, kind = entry.split(" ")
    group, _, version = api.rpartition("/")
    return schema_path(group, kind, version)


def index_text(origins: dict[str, str]) -> str:
    return "".join(f"{path}\t{origins[path]}\n" for path in sorted(origins))


def write(files: dict[str, str], origins: dict[str, str], root: Path = SCHEMA_DIR) -> list[str]:
    """Make ``root`` hold exactly ``files`` and their INDEX.tsv; return what changed."""
    changed = []
    wanted = {**files, INDEX: index_text(origins)}
    for path in sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()):
        if path not in wanted:
            (root / path).unlink()
            changed.append(f"removed {path}")
    for path, content in sorted(wanted.items()):
        target = root / path
        if not target.exists() or target.read_text() != content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            changed.append(f"wrote {path}")
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return changed


def main(argv: list[str] | None = None, fetch: Any = download) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only report whether tests/data/schemas is up to date")
    args = parser.parse_args(argv)
    try:
        files, origins = collect(fetch=fetch)
    except RefreshError as exc:
        print(f"refresh.py: {exc}", file=sys.stderr)
        print("refresh.py: nothing was changed (the schemas are fetched from GitHub; "
              "run this where github.com is reachable)", file=sys.stderr)
        return 2
    if args.check:
        current = {p.relative_to(SCHEMA_DIR).as_posix(): p.read_text()
                   for p in SCHEMA_DIR.rglob("*") if p.is_file()}
        stale = current != {**files, INDEX: index_text(origins)}
        print("tests/data/schemas is " + ("out of date" if stale else "up to date"))
        return 1 if stale else 0
    for line in write(files, origins):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
