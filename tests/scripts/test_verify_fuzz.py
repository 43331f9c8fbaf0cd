"""``meshboot verify`` against answers of any shape: a row per check, never a traceback.

A live API server or istiod may answer with documents meshboot did not expect
(another version, a proxy in between, a half-written object). The checks run
here on mutations of the recorded healthy mesh (tests/support/live_mesh.py):
values replaced by other JSON types, keys dropped, lists emptied. Every run
must give rows with a known status; a malformed answer is a ``fail`` row.
The documents reach the checks through a table-backed stand-in for
``clusters.kube_client.Kube`` (the paths the real client would request);
tests/scripts/test_verify.py covers the real client and HTTP.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from clusters.kube_client import KubeError
from clusters.loader import load_stack_file
from pki.ca import CA
from stacks.build import build_plan
from stacks.verify import verifier
from stacks.verify_run import Runner
from tests.conftest import write_stack
from tests.support import live_mesh as mesh

CLUSTERS = ("east", "west")
JUNK: list[Any] = [None, 0, -1, 3.5, True, "", "x", "-----BEGIN CERTIFICATE-----\nAAAA\n",
                   [], [None], {}, {"items": None}, {"metadata": []}, [{"id": 1}], "{}"]


class TableKube:
    """The requests ``Kube`` would make, answered from a live_mesh table."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table

    def _get(self, path: str) -> Any:
        doc = self.table.get(path)
        if doc is not None and not isinstance(doc, dict):
            raise KubeError(f"{path}: the answer is not a JSON object")
        return doc

    def secret(self, ns: str, name: str) -> Any:
        return self._get(f"/api/v1/namespaces/{ns}/secrets/{name}")

    def config_map(self, ns: str, name: str) -> Any:
        return self._get(f"/api/v1/namespaces/{ns}/configmaps/{name}")

    def namespace(self, name: str) -> Any:
        return self._get(f"/api/v1/namespaces/{name}")

    def service(self, ns: str, name: str) -> Any:
        return self._get(f"/api/v1/namespaces/{ns}/services/{name}")

    def endpoints(self, ns: str, name: str) -> Any:
        return self._get(f"/api/v1/namespaces/{ns}/endpoints/{name}")

    def deployment(self, ns: str, name: str) -> Any:
        return self._get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")

    def custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> Any:
        return self._get(f"/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}")

    def _items(self, path: str) -> list[Any]:
        page = self._get(path)
        if page is None:
            raise KubeError(f"{path}: 404")
        found = page.get("items") or []
        return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []

    def pods(self, label_selector: str) -> list[Any]:
        return self._items("/api/v1/pods")

    def namespaced_pods(self, ns: str, label_selector: str, field_selector: str = "") -> list[Any]:
        return self._items(f"/api/v1/namespaces/{ns}/pods")

    def nodes(self) -> list[Any]:
        return self._items("/api/v1/nodes")

    def pod_get(self, ns: str, pod: str, port: int, path: str) -> Any:
        key = f"/api/v1/namespaces/{ns}/pods/{pod}/portforward:{port}/{path}"
        if key not in self.table:
            raise KubeError(f"{key}: the pod answered 404")
        return self.table[key]

    def service_proxy(self, ns: str, svc: str, port: int, path: str) -> Any:
        raise KubeError("no service proxy here", refused=True)


def mutate(doc: Any, rng: random.Random, depth: int = 0) -> Any:
    """``doc`` with some values swapped for junk, keys dropped, lists cut."""
    if depth > 0 and rng.random() < 0.12:
        return copy.deepcopy(rng.choice(JUNK))
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if rng.random() < 0.08:
                continue
            out[k] = mutate(v, rng, depth + 1)
        return out
    if isinstance(doc, list):
        items = [mutate(v, rng, depth + 1) for v in doc]
        return items[:rng.randrange(len(items) + 1)] if items and rng.random() < 0.2 else items
    return doc


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=30)
    inter = {c: root.issue_intermediate(profile="istio", cluster=c, key_algorithm="ecdsa-p256",
                                        validity_days=10) for c in CLUSTERS}
    anchor = CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=30)
    issuers = {c: anchor.issue_intermediate(profile="linkerd", cluster=c,
                                            key_algorithm="ecdsa-p256", validity_days=10)
               for c in CLUSTERS}
    out = {}
    for provider, spec, tables, trust in (
            ("istio", mesh.istio_spec(), {c: mesh.istio_cluster(c, root, inter[c])
                                          for c in CLUSTERS}, root.cert_pem),
            ("linkerd", mesh.linkerd_spec(), {c: mesh.linkerd_cluster(c, anchor.cert_pem, issuers[c])
                                              for c in CLUSTERS}, anchor.cert_pem)):
        tmp = tmp_path_factory.mktemp(provider)
        (tmp / "root.pem").write_text(trust)
        (tmp / "root-key.pem").write_text((root if provider == "istio" else anchor).key_pem)
        loaded = load_stack_file(write_stack(tmp, spec))
        plan = build_plan(loaded.spec, loaded.source, loaded.base_dir)
        out[provider] = (loaded.spec, plan, tables, trust, tmp)
    return out


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_mutated_answers_give_rows_not_tracebacks(provider: str,
                                                  environments: dict[str, Any]) -> None:
    spec, plan, tables, trust, tmp = environments[provider]
    rng = random.Random(f"verify-{provider}")
    statuses: set[str] = set()
    shapes = 0
    for _ in range(150):
        mutated = {c: {path: mutate(doc, rng) if rng.random() < 0.5 else doc
                       for path, doc in table.items()} for c, table in tables.items()}
        checker = verifier(spec, plan, lambda ref, pem=trust: pem)
        runner = Runner(checker, Path(tmp))
        rows = []
        for cluster in CLUSTERS:
            kube = TableKube(mutated[cluster])
            for name, check in checker.checks(cluster):
                found, _ = runner.attempt(kube, cluster, name, check, deadline=0.0)  # type: ignore[arg-type]
                rows += found
        rows += checker.identical_roots()
        assert rows and all(r.status in ("ok", "warn", "fail") for r in rows), rows
        assert all(isinstance(r.reason, str) and r.reason for r in rows)
        statuses |= {r.status for r in rows}
        shapes += sum("unexpected shape" in r.reason for r in rows)
    assert {"ok", "fail"} <= statuses and shapes > 20   # the mutations reached the checks
