"""A lost cluster rebuilt, under Pulumi mocks: what changes in the program's graph.

Two runs of the real ``__main__.py``: before, and after cluster C came back with
a new API server, kubeconfig, tokens and load-balancer address (the first run
standing in for the state, so the PKI resources go through diff/update). The
graph must keep every identity value, change exactly the credentials that
involve C (plus C's provider and what reads C's gateway address), and every URN
``meshboot dr plan`` prints must be one the program registers.
Expectations come from the spec (names of peers, links), not from stacks.dr.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from clusters.loader import load_stack_file
from stacks.build import build_plan
from stacks.dr import IntermediateStatus, commands, dr_plan
from tests.conftest import base_spec, write_stack
from tests.stacks.linkerd.specs import three_clusters
from tests.support.pulumi_harness import (
    CONFIG_GROUP,
    FAKE_KUBECONFIG,
    PROVIDER,
    ProgramRun,
    Registered,
    run_program,
    unwrap_secrets,
    with_fake_kubeconfigs,
)

NEW_SERVER = "https://203.0.113.50:6443"


def istio_four() -> dict[str, Any]:
    """a, b, d primaries on two networks; c a remote of a; a's gateway address from its LB."""
    spec = base_spec()
    spec["clusters"] = [
        {"name": "a", "apiServer": "https://10.0.0.1:6443", "network": "n1", "region": "r1"},
        {"name": "b", "apiServer": "https://10.0.0.2:6443", "network": "n2", "region": "r2",
         "eastWestGateway": {"address": "192.0.2.2"}},
        {"name": "c", "apiServer": "https://10.0.0.3:6443", "network": "n1", "region": "r1",
         "role": "remote", "primary": "a"},
        {"name": "d", "apiServer": "https://10.0.0.4:6443", "network": "n2", "region": "r2",
         "eastWestGateway": {"address": "192.0.2.4"}},
    ]
    spec["services"][0]["clusters"] = ["a", "b", "c"]
    return spec


def linkerd_three() -> dict[str, Any]:
    spec = three_clusters()
    del spec["clusters"][0]["eastWestGateway"]   # a's gateway address from its load balancer
    return spec


# A primary whose address comes from its load balancer, a remote, a Linkerd cluster.
CASES = {"istio-a": (istio_four, "a"), "istio-c": (istio_four, "c"),
         "linkerd-a": (linkerd_three, "a")}


BEFORE: dict[Any, ProgramRun] = {}


def rebuilt_spec(spec: dict[str, Any], cluster: str) -> dict[str, Any]:
    out = with_fake_kubeconfigs(copy.deepcopy(spec))
    for c in out["clusters"]:
        if c["name"] == cluster:
            c["apiServer"] = NEW_SERVER
            c["kubeconfig"] = FAKE_KUBECONFIG.replace("https://127.0.0.1:6443", NEW_SERVER)
    return out


@pytest.fixture(scope="module", params=sorted(CASES))
def rebuild(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Any]:
    make, cluster = CASES[request.param]
    spec = make()
    if make not in BEFORE:   # one "before" per environment: the runs are the slow part
        BEFORE[make] = run_program(with_fake_kubeconfigs(spec), stack="dev")
    before = BEFORE[make]
    after_spec = rebuilt_spec(spec, cluster)
    after = run_program(after_spec, stack="dev", previous=before, rebuilt=frozenset({cluster}))
    stack_file = write_stack(tmp_path_factory.mktemp("dr"), after_spec)
    plan = build_plan(load_stack_file(stack_file).spec, source=str(stack_file),
                      base_dir=stack_file.parent)
    net = next(c.get("network", "") for c in spec["clusters"] if c["name"] == cluster)
    dr = dr_plan(plan, cluster, "dev", "meshboot", net, "root",
                 IntermediateStatus(reissued=True, why="test"))
    return {"spec": spec, "cluster": cluster, "before": before, "after": after, "dr": dr,
            "plan": plan}


def by_urn(run: ProgramRun) -> dict[str, Registered]:
    return {r.urn: r for r in run.resources}


def changed(before: ProgramRun, after: ProgramRun) -> set[str]:
    """Names of resources whose inputs (managed) or read state (reads) differ."""
    old = by_urn(before)
    out = set()
    for urn, r in by_urn(after).items():
        o = old[urn]
        if r.read:
            if unwrap_secrets(r.outputs) != unwrap_secrets(o.outputs):
                out.add(r.name)
        elif unwrap_secrets(r.inputs) != unwrap_secrets(o.inputs):
            out.add(r.name)
    return out


def peers_reading(spec: dict[str, Any], cluster: str) -> set[str]:
    """Clusters that hold a credential for ``cluster``: Istio primaries, Linkerd linkers."""
    names = [c["name"] for c in spec["clusters"]]
    if spec["mesh"]["provider"] == "linkerd":
        return {n for n in names if n != cluster}   # every cluster links to every other
    return {c["name"] for c in spec["clusters"]
            if c["name"] != cluster and c.get("role", "primary") == "primary"}


def test_same_resources_before_and_after(rebuild: dict[str, Any]) -> None:
    assert set(by_urn(rebuild["before"])) == set(by_urn(rebuild["after"]))


def test_identity_kept(rebuild: dict[str, Any]) -> None:
    before, after = by_urn(rebuild["before"]), by_urn(rebuild["after"])
    pki = [u for u in before if "pulumi-python:dynamic" in u]
    assert len(pki) == 1 + len(rebuild["spec"]["clusters"])
    for urn in pki:
        for key in ("cert_pem", "key_pem", "fingerprint", "trust_domain", "mesh_id"):
            assert after[urn].outputs[key] == before[urn].outputs[key], (urn, key)
    spec = rebuild["spec"]
    compared = 0
    for r in after.values():
        if r.name.endswith("-istiod") or r.name.endswith("-linkerd-control-plane"):
            values = unwrap_secrets(r.inputs["values"])
            if spec["mesh"]["provider"] == "istio":
                g = values["global"]
                cluster = r.name.rsplit("-istiod", 1)[0]
                network = next(c["network"] for c in spec["clusters"] if c["name"] == cluster)
                assert (g["meshID"], g["multiCluster"]["clusterName"], g["network"]) == \
                    (spec["mesh"]["id"], cluster, network)
            else:
                assert values["identityTrustDomain"] == spec["mesh"]["trustDomain"]
            compared += 1
    assert compared == len(spec["clusters"])


def test_exactly_the_credentials_involving_the_cluster_change(rebuild: dict[str, Any]) -> None:
    spec, c = rebuild["spec"], rebuild["cluster"]
    diff = changed(rebuild["before"], rebuild["after"])
    peers = peers_reading(spec, c)
    if spec["mesh"]["provider"] == "istio":
        creds = {f"{p}-secret-istio-system-istio-remote-secret-{c}" for p in peers}
        token_read = f"{c}-istio-reader-token-1-read"
    else:
        creds = {f"{p}-secret-{ns}-cluster-credentials-{c}" for p in peers
                 for ns in ("linkerd", "linkerd-multicluster")}
        token_read = f"{c}-linkerd-service-mirror-remote-access-default-token-g1-read"
    assert peers and creds
    expected = creds | {f"{c}-k8s", token_read}
    # What reads c's load-balancer address (a has none in the spec): the remote's istiod
    # (remotePilotAddress), the Links of the other clusters.
    gateway_readers: set[str] = set()
    if c == "a":
        net = {n["name"]: n["network"] for n in spec["clusters"]}
        # Linkerd: only Links from another network go through the gateway.
        gateway_readers = {"c-istiod"} if spec["mesh"]["provider"] == "istio" else \
            {f"{p}-links" for p in peers if net[p] != net[c]}
        expected |= gateway_readers | {f"{c}-istio-eastwestgateway-lb"
                                       if spec["mesh"]["provider"] == "istio"
                                       else f"{c}-linkerd-gateway-lb"}
    assert diff == expected
    dr = rebuild["dr"]
    peer_creds = {u.split("::")[-1] for u in (x.urn for x in dr.reissued)
                  if not u.split("::")[-1].startswith(f"{c}-")}
    assert peer_creds == creds
    assert {r.name for r in dr.address_readers if r.kind != "object"} == gateway_readers
    if spec["mesh"]["provider"] == "linkerd" and gateway_readers:
        # Of a ConfigGroup, only the Link to c's gateway (its child) reads the address.
        assert {r.name for r in dr.address_readers if r.kind == "object"} == \
            {f"{p}-links:linkerd-multicluster/{c}" for p in peers
             if f"{p}-links" in gateway_readers}
    # Everything that changed is in the up command, and the provider change is explained.
    after = by_urn(rebuild["after"])
    targeted = {after[u].name for u in dr.up_targets if u in after}
    assert diff <= targeted
    assert after[dr.provider_urn].type == PROVIDER and after[dr.provider_urn].name == f"{c}-k8s"


def test_credentials_in_the_rebuilt_cluster_are_recreated(rebuild: dict[str, Any]) -> None:
    spec, c = rebuild["spec"], rebuild["cluster"]
    dr = rebuild["dr"]
    mine = {x.name for x in dr.reissued if x.cluster == c}
    names = [n["name"] for n in spec["clusters"]]
    if spec["mesh"]["provider"] == "istio":
        is_primary = next(n for n in spec["clusters"] if n["name"] == c).get("role") != "remote"
        wanted = {f"istio-remote-secret-{o}" for o in names if o != c} if is_primary else set()
        wanted.add("istio-reader-token-1")
    else:
        wanted = {f"cluster-credentials-{o}" for o in names if o != c}
        wanted.add("linkerd-service-mirror-remote-access-default-token-g1")
    assert mine == wanted


def children(run: ProgramRun) -> set[str]:
    """URNs of the objects each ConfigGroup registers in the provider, from its recorded
    ``objs`` input: ``<group>:[<ns>/]<name>`` under the group, typed by apiVersion/kind
    (pulumi-kubernetes yaml/v2 ``register``; the mocks do not run the provider)."""
    out = set()
    for g in run.of_type(CONFIG_GROUP):
        parts = g.urn.split("::")
        head, qualified = "::".join(parts[:2]), parts[2]
        for obj in unwrap_secrets(g.inputs["objs"]):
            group, version = (obj["apiVersion"].split("/") + [""])[:2]
            token = f"core/{group}" if not version else obj["apiVersion"]
            meta = obj["metadata"]
            name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
            out.add(f"{head}::{qualified}$kubernetes:{token}:{obj['kind']}::{g.name}:{name}")
    return out


def test_every_listed_urn_is_in_the_graph(rebuild: dict[str, Any]) -> None:
    dr, after = rebuild["dr"], rebuild["after"]
    known = set(by_urn(after)) | children(after)
    listed = [*dr.refresh_targets, *dr.up_targets, *dr.replace, dr.provider_urn,
              *(x.urn for x in dr.reissued)]
    assert listed and set(listed) <= known, sorted(set(listed) - known)
    assert any("$kubernetes:core/v1:Namespace::" in u for u in dr.refresh_targets)
    # The refresh forgets every object of the cluster the state holds, and nothing else.
    c = rebuild["cluster"]
    cm = next(r.urn for r in after.resources if r.type == "meshboot:index:ClusterMesh"
              and r.name == c)
    under = {r.urn for r in after.resources
             if r.parent == cm and r.type != PROVIDER}
    under |= {u for u in children(after) if u.rsplit("::", 1)[1].startswith(f"{c}-")}
    assert set(dr.refresh_targets) == under
    text = "\n".join(commands(dr, "Pulumi.dev.yaml"))
    for urn in listed:
        assert f"'{urn}'" in text
    if dr.intermediate_urn is not None:
        assert f"--replace '{dr.intermediate_urn}'" in text
    else:
        assert "--replace" not in text and "IntermediateCA" not in text
    assert json.dumps(text)  # one printable string per command


def test_the_intermediate_is_listed_where_the_cluster_uses_it(rebuild: dict[str, Any]) -> None:
    """From the recorded graph: C's intermediate is kept/re-issued/targeted exactly when a
    resource in C depends on it (an Istio remote has no cacerts, so it uses none)."""
    c, dr = rebuild["cluster"], rebuild["dr"]
    after = by_urn(rebuild["after"])
    ca = next(u for u, r in after.items() if r.type.endswith(":IntermediateCA") and
              r.name == f"{c}-ca")
    cm = next(u for u, r in after.items() if r.type == "meshboot:index:ClusterMesh"
              and r.name == c)
    used = any(ca in r.dependencies for r in after.values() if r.parent == cm)
    assert dr.intermediate_urn == (ca if used else None)
    assert (ca in dr.up_targets) == used and dr.replace == ([ca] if used else [])
    if rebuild["spec"]["mesh"]["provider"] == "linkerd" or c == "a":
        assert used   # the assertion above is not vacuous
    else:
        assert not used   # c: an Istio remote


def test_stack_and_project_in_urns(rebuild: dict[str, Any]) -> None:
    """A fully qualified stack name: the command keeps it, the URNs use its last part."""
    c = rebuild["cluster"]
    dr = dr_plan(rebuild["plan"], c, "acme/meshboot/dev", "meshboot", "n", "root",
                 IntermediateStatus(reissued=False, why="kept"))
    assert dr.up_targets == rebuild["dr"].up_targets
    assert dr.replace == []
    assert "pulumi up --stack acme/meshboot/dev " in commands(dr, "Pulumi.dev.yaml")[1]
    other = dr_plan(rebuild["plan"], c, "prod", "platform", "n", "root",
                    IntermediateStatus(reissued=False, why="kept"))
    assert [u.replace("urn:pulumi:prod::platform::", "urn:pulumi:dev::meshboot::")
            for u in other.up_targets] == dr.up_targets


def test_urn_function_names_every_resource_the_program_registers(rebuild: dict[str, Any]) -> None:
    from stacks.pulumi_urns import program_resources

    computed = program_resources(rebuild["plan"], "dev", "meshboot")
    graph = rebuild["after"]
    assert {r.urn for r in computed if r.kind != "object"} == set(by_urn(graph))
    assert {r.urn for r in computed if r.kind == "object"} == children(graph)
    types = {r.urn: r.type for r in graph.resources}
    assert all(types[r.urn] == r.type for r in computed if r.kind != "object")


def test_verify_covers_every_cluster_whose_graph_changed(rebuild: dict[str, Any]) -> None:
    """`meshboot verify --cluster X` checks X's own view (its remote secrets, Links); the
    printed verify names the rebuilt cluster and each cluster holding a changed resource."""
    spec, c, dr = rebuild["spec"], rebuild["cluster"], rebuild["dr"]
    after = by_urn(rebuild["after"])
    holders = set()
    for name in changed(rebuild["before"], rebuild["after"]):
        r = next(x for x in after.values() if x.name == name)
        parent = after[r.parent] if r.parent in after else r
        assert parent.type == "meshboot:index:ClusterMesh", (name, parent.type)
        holders.add(parent.name)
    assert holders - {c}   # the rebuild changed something in a peer
    assert dr.verify_clusters == [c] + [n["name"] for n in spec["clusters"]
                                        if n["name"] in holders - {c}]
    verify = commands(dr, "Pulumi.dev.yaml")[-1].splitlines()[-1]
    assert verify == ("meshboot verify --config Pulumi.dev.yaml "
                      + " ".join(f"--cluster {n}" for n in dr.verify_clusters) + " --wait 5m")


def test_linkerd_peers_restart_what_reads_the_credentials_at_start(
        rebuild: dict[str, Any]) -> None:
    """Linkerd's destination (remote discovery) and each Link's service mirror read a
    credentials Secret when they start, not when `pulumi up` updates it: every peer holding
    a credential for C restarts both; Istio (istiod follows Secret updates) restarts nothing."""
    spec, c, dr = rebuild["spec"], rebuild["cluster"], rebuild["dr"]
    cmds = commands(dr, "Pulumi.dev.yaml")
    if spec["mesh"]["provider"] == "istio":
        assert dr.restarts == [] and not any("kubectl" in x for x in cmds)
        return
    peers = [n["name"] for n in spec["clusters"] if n["name"] in peers_reading(spec, c)]
    assert peers
    assert [(r.cluster, r.namespace, r.deployment) for r in dr.restarts] == [
        x for p in peers for x in ((p, "linkerd", "linkerd-destination"),
                                   (p, "linkerd-multicluster", f"controller-{c}"))]
    restart, verify = cmds[-2], cmds[-1]
    assert "pulumi up" in cmds[-3] and "meshboot verify" in verify
    for p in peers:
        assert (f"-n linkerd-multicluster rollout restart deployment/controller-{c}"
                f"   # {p}'s kubeconfig is inline") in restart
        assert (f"-n linkerd rollout restart deployment/linkerd-destination"
                f"   # {p}'s kubeconfig is inline") in restart
