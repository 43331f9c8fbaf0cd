"""Primary-remote install order across clusters, in the Pulumi graph and in render's output.

Upstream order (istio.io "Install Primary-Remote on different networks"): expose
istiod in the primary, install the remote, apply the remote's remote secret in
the primary, only then install the remote's east-west gateway. The remote's
injection webhook is ``failurePolicy: Fail`` with an empty caBundle
(istio-discovery ``templates/mutatingwebhook.yaml``) until the primary's istiod,
having read that remote secret, patches it (``pilot/pkg/serviceregistry/kube/
controller/multicluster.go``); the gateway pod (image ``auto``) is injected. A
remote secret works only once the target's reader RBAC exists, which comes from
the istiod chart (``templates/reader-clusterrole.yaml``), not from base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import base_spec, write_stack
from tests.support.pulumi_harness import ProgramRun, run_program, with_fake_kubeconfigs


def primary_remote(fixed_addresses: bool) -> dict[str, Any]:
    """east and west are primaries; central is east's remote on a network of its own."""
    spec = base_spec()
    spec["clusters"] = [
        {"name": "east", "apiServer": "https://10.0.0.1:6443", "network": "n-east"},
        {"name": "west", "apiServer": "https://10.0.0.2:6443", "network": "n-west"},
        {"name": "central", "apiServer": "https://10.0.0.3:6443", "network": "n-central",
         "role": "remote", "primary": "east"},
    ]
    if fixed_addresses:
        for i, c in enumerate(spec["clusters"]):
            c["eastWestGateway"] = {"address": f"192.0.2.{10 + i}"}
    spec["services"][0]["clusters"] = ["east", "west", "central"]
    return spec


def deps_of(run: ProgramRun, name: str) -> set[str]:
    return {run.by_urn(u).name for u in run.named(name).dependencies}


@pytest.fixture(scope="module")
def fixed_run() -> ProgramRun:
    return run_program(with_fake_kubeconfigs(primary_remote(fixed_addresses=True)))


@pytest.fixture(scope="module", params=[True, False], ids=["fixed-addresses", "lb-addresses"])
def run(request: pytest.FixtureRequest) -> ProgramRun:
    if request.param:
        return request.getfixturevalue("fixed_run")
    return run_program(with_fake_kubeconfigs(primary_remote(request.param)))


def test_remote_gateway_waits_for_istiod_exposure_and_its_remote_secret(run: ProgramRun) -> None:
    deps = deps_of(run, "central-eastwest-gateway")
    assert "east-mesh-gateways" in deps                                 # istiod-gateway / istiod-vs
    assert "east-secret-istio-system-istio-remote-secret-central" in deps
    assert "central-istiod" in deps                                     # within the cluster, as before


def test_remote_secrets_wait_for_the_targets_istiod(run: ProgramRun) -> None:
    for holder, target in [("east", "central"), ("west", "central"), ("east", "west"),
                           ("west", "east")]:
        deps = deps_of(run, f"{holder}-secret-istio-system-istio-remote-secret-{target}")
        assert f"{target}-istiod" in deps, (holder, target)
        assert f"{holder}-istiod" in deps  # its own step order is kept


def test_primaries_do_not_wait_for_remotes_gateways(run: ProgramRun) -> None:
    """The edges go one way: nothing in the primary waits for the remote's gateway."""
    for r in run.resources:
        if r.name.startswith("east-") and not r.read:
            assert "central-eastwest-gateway" not in {run.by_urn(u).name
                                                      for u in r.dependencies}, r.name


def test_render_writes_the_order_pulumi_follows(tmp_path: Path, fixed_run: ProgramRun) -> None:
    spec = primary_remote(fixed_addresses=True)
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 0, result.output
    assert "cross-cluster order" in result.output
    assert "central/eastwest-gateway after east/mesh-gateways" in result.output
    order = json.loads((tmp_path / "out" / ".meshboot-render.json").read_text())["order"]
    edges = {(o["apply"]["cluster"], o["apply"]["step"], o["after"]["cluster"],
              o["after"]["step"], (o["after"].get("object") or {}).get("name")) for o in order}
    assert ("central", "eastwest-gateway", "east", "remote-secrets",
            "istio-remote-secret-central") in edges
    assert ("east", "remote-secrets", "central", "istiod", None) in edges
    # One contract, two back-ends: every edge render documents is a Pulumi dependency.
    run = fixed_run  # the Pulumi program of this same spec
    for o in order:
        a, b = o["apply"], o["after"]
        waiter = (f"{a['cluster']}-secret-{a['object']['namespace']}-{a['object']['name']}"
                  if "object" in a else f"{a['cluster']}-{a['step']}")
        target = (f"{b['cluster']}-secret-{b['object']['namespace']}-{b['object']['name']}"
                  if "object" in b else f"{b['cluster']}-{b['step']}")
        assert target in deps_of(run, waiter), (waiter, target)


def test_multi_primary_has_no_remote_gateway_edges(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 0, result.output
    order = json.loads((tmp_path / "out" / ".meshboot-render.json").read_text())["order"]
    assert all(o["after"]["step"] == "istiod" for o in order)
