"""Rotating the tokens behind cross-cluster credentials (``meshboot:mesh.tokenGeneration``),
proven against a real HTTPS API server on 127.0.0.1 that accepts exactly the
tokens of the token Secrets that exist at each moment.

Bumping the generation gives the token Secret a new name while the credential
(Istio ``istio-remote-secret-<c>``, Linkerd ``cluster-credentials-<c>``) keeps
its own: ``pulumi up`` creates the new token Secret, updates the credential in
place (istiod swaps its client once the new one has synced,
pkg/kube/multicluster/secretcontroller.go; the Linkerd service mirror restarts
its watch), and deletes the old token Secret last, as Pulumi deletes resources
no longer in the program after the creates and updates of the run. Every request
the reading cluster makes with its current credential succeeds along that
order; deleting the old token first (what a rename-in-place would do) locks it out.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from clusters.loader import spec_from_config
from pki.ca import CA
from stacks.build import build_plan
from stacks.plan import KubeconfigRef, MeshPlan, is_secret, kubeconfig_yaml, walk_refs
from tests.conftest import base_spec
from tests.scripts.test_preflight_live import Api, node, serve


def plan(provider: str, generation: int) -> MeshPlan:
    spec = base_spec()
    spec["mesh"]["provider"] = provider
    spec["mesh"]["tokenGeneration"] = generation
    if provider == "linkerd":
        for i, c in enumerate(spec["clusters"]):
            c["eastWestGateway"] = {"address": f"192.0.2.{10 + i}"}
    return build_plan(spec_from_config({f"meshboot:{k}": v for k, v in spec.items()}, "t"))


def credential(p: MeshPlan, reader: str, target: str) -> tuple[str, KubeconfigRef]:
    """The credential ``reader`` holds for ``target``: (Secret name, its kubeconfig ref)."""
    for step in p.cluster(reader).steps:
        for obj in step.objects:
            for ref in walk_refs(obj):
                if isinstance(ref, KubeconfigRef) and ref.target == target:
                    return obj["metadata"]["name"], ref
    raise AssertionError(f"{reader} holds no credential for {target}")


def token_secrets(p: MeshPlan, cluster: str) -> set[str]:
    return {o["metadata"]["name"] for s in p.cluster(cluster).steps for o in s.objects
            if is_secret(o) and o.get("type") == "kubernetes.io/service-account-token"}


def request(kubeconfig: str) -> int:
    """GET /api/v1/nodes the way a reading cluster would: the kubeconfig's CA and token."""
    doc = json.loads(kubeconfig)
    cluster = doc["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    ctx.check_hostname = False
    req = urllib.request.Request(f"{cluster['server']}/api/v1/nodes", headers={
        "Authorization": f"Bearer {doc['users'][0]['user']['token']}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.fixture(scope="module")
def api_root() -> CA:
    return CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=2)


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_token_rotation_never_locks_the_reader_out(provider: str, api_root: CA,
                                                   tmp_path: Path) -> None:
    gen1, gen2 = plan(provider, 1), plan(provider, 2)
    name1, ref1 = credential(gen1, "east", "west")
    name2, ref2 = credential(gen2, "east", "west")
    assert name1 == name2                       # the credential is updated in place...
    assert ref1.token_secret != ref2.token_secret   # ...to a token Secret with a new name
    assert ref1.token_secret[1] in token_secrets(gen1, "west")
    assert ref2.token_secret[1] in token_secrets(gen2, "west")
    assert ref1.token_secret[1] not in token_secrets(gen2, "west")   # deleted by pulumi up

    def token(ref: KubeconfigRef) -> str:
        return f"token-of-{ref.token_secret[1]}"    # what the token controller wrote

    api = Api(nodes={token(ref1): [node("w1", {})]})
    with serve(api, api_root, tmp_path) as srv:
        def kubeconfig(ref: KubeconfigRef) -> str:
            return kubeconfig_yaml(ref.target, srv.url, srv.ca_pem, token(ref), ref.user)

        held = kubeconfig(ref1)
        steps: list[tuple[str, Any]] = [
            ("gen 1 deployed", None),
            ("create the new token Secret", lambda: api.nodes.update({token(ref2): []})),
            ("update the credential", None),
            ("delete the old token Secret", lambda: api.nodes.pop(token(ref1))),
        ]
        for what, change in steps:
            if change is not None:
                change()
            if what == "update the credential":
                held = kubeconfig(ref2)
            assert request(held) == 200, what
        # the wrong order: the old token deleted before the credential is updated
        api.nodes = {token(ref2): []}
        assert request(kubeconfig(ref1)) == 401
