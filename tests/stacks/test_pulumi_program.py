"""Pulumi adapter: the plan is its only input; errors named by key path, raised before
any resource exists."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pulumi
import pytest

from clusters.kubeconfig import KubeconfigLocation
from clusters.loader import spec_from_config
from stacks.build import build_plan
from stacks.plan import CrossClusterDep, MeshPlan, StepRef
from stacks.pulumi_program import (
    ProgramError,
    _ingress_address,
    _schedule,
    all_kubeconfigs,
    build_environment,
)
from tests.conftest import base_spec
from tests.support.pulumi_harness import (
    FAKE_KUBECONFIG,
    PROVIDER,
    ProgramRun,
    run_function,
    run_program,
    unwrap_secrets,
    with_fake_kubeconfigs,
)


def plan_of(spec_dict: dict[str, Any], base_dir: Path = Path(".")) -> MeshPlan:
    spec = spec_from_config({f"meshboot:{k}": v for k, v in spec_dict.items()}, "t")
    return build_plan(spec, "t", base_dir=base_dir)


def test_missing_kubeconfigs_are_all_reported_before_anything_is_registered(
        tmp_path: Path) -> None:
    spec = base_spec()
    spec["clusters"][0]["kubeconfig"] = str(tmp_path / "east.kubeconfig")
    spec["clusters"][1]["kubeconfig"] = str(tmp_path / "west.kubeconfig")
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as err:
        run_program(spec, run=run)
    assert run.resources == []
    text = str(err.value)
    assert "meshboot:clusters[0].kubeconfig: cluster 'east' has no kubeconfig" in text
    assert "meshboot:clusters[1].kubeconfig: cluster 'west' has no kubeconfig" in text


def test_kubeconfig_file_relative_to_the_stack_file(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    spec_dict = base_spec()
    for c in spec_dict["clusters"]:
        c["kubeconfig"] = "kc"
    assert all_kubeconfigs(plan_of(spec_dict, tmp_path)) == {
        "east": "apiVersion: v1\nkind: Config\n", "west": "apiVersion: v1\nkind: Config\n"}
    # The plan holds where the file is, not what it says: building it reads nothing.
    elsewhere = plan_of(spec_dict, tmp_path / "elsewhere")
    assert elsewhere.cluster("east").connection.kubeconfig.path == tmp_path / "elsewhere" / "kc"
    with pytest.raises(ProgramError, match=r"clusters\[0\]\.kubeconfig(.|\n)*clusters\[1\]"):
        all_kubeconfigs(elsewhere)


def test_kubeconfig_from_the_environment_is_looked_up_when_read(tmp_path: Path) -> None:
    plan = plan_of(base_spec(), tmp_path)
    assert plan.cluster("east").connection.kubeconfig == KubeconfigLocation("east", 0)
    (tmp_path / "kc").write_text(FAKE_KUBECONFIG)
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{tmp_path / 'kc'}", "HOME": str(tmp_path)}
    assert all_kubeconfigs(plan, env) == {"east": FAKE_KUBECONFIG, "west": FAKE_KUBECONFIG}


def _providers(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {r.name: unwrap_secrets(r.inputs) for r in run.of_type(PROVIDER)}


def test_provider_context_and_kubeconfig_come_from_the_plan() -> None:
    spec = with_fake_kubeconfigs(base_spec())
    spec["clusters"][0]["context"] = "east-ctx"
    spec["clusters"][1]["context"] = "west-ctx"
    plan = plan_of(spec)
    before = _providers(run_function(lambda: build_environment(plan)))
    assert before["east-k8s"]["context"] == "east-ctx"
    assert before["east-k8s"]["kubeconfig"] == FAKE_KUBECONFIG

    # Change the plan only (the spec is untouched): the providers follow the plan.
    east = plan.cluster("east")
    other = FAKE_KUBECONFIG.replace("127.0.0.1", "127.0.0.2")
    east.connection_params = dataclasses.replace(
        east.connection, context="elsewhere",
        kubeconfig=KubeconfigLocation("east", 0, inline=other))
    after = _providers(run_function(lambda: build_environment(plan)))
    assert after["east-k8s"]["context"] == "elsewhere"
    assert after["east-k8s"]["kubeconfig"] == other
    assert after["west-k8s"] == before["west-k8s"]


def test_pki_comes_from_the_plan() -> None:
    plan = plan_of(with_fake_kubeconfigs(base_spec()))
    plan.pki_params = dataclasses.replace(plan.pki, trust_domain="other.example",
                                          root_validity_days=1234)
    run = run_function(lambda: build_environment(plan))
    root = run.named("mesh1-pki-root")
    assert root.inputs["trust_domain"] == "other.example"
    assert root.inputs["validity_days"] == 1234
    assert {r.name for r in run.resources if r.name.endswith("-ca")} == {"east-ca", "west-ca"}


def _cyclic(plan: MeshPlan) -> MeshPlan:
    """east/istiod after west/istiod after east/istiod."""
    plan.order += [
        CrossClusterDep(StepRef("east", "istiod"), StepRef("west", "istiod"), "test"),
        CrossClusterDep(StepRef("west", "istiod"), StepRef("east", "istiod"), "test"),
    ]
    return plan


def test_a_dependency_cycle_is_a_program_error_naming_its_steps() -> None:
    plan = _cyclic(plan_of(with_fake_kubeconfigs(base_spec())))
    with pytest.raises(ProgramError, match="circular") as err:
        _schedule(plan)
    assert "east/istiod" in str(err.value) and "west/istiod" in str(err.value)
    run = ProgramRun()
    with pytest.raises(ProgramError, match="circular"):
        run_function(lambda: build_environment(plan), run=run)
    # Nothing of any cluster was registered.
    assert run.resources and not [r for r in run.resources
                                  if r.type in (PROVIDER, "meshboot:index:ClusterMesh")]


def test_dependency_on_a_step_the_plan_lacks_is_a_program_error() -> None:
    plan = plan_of(with_fake_kubeconfigs(base_spec()))
    plan.order.append(CrossClusterDep(StepRef("east", "istiod"), StepRef("west", "nope"), "test"))
    with pytest.raises(ProgramError, match="west/nope"):
        _schedule(plan)


def test_schedule_is_deterministic_and_follows_every_edge() -> None:
    spec = with_fake_kubeconfigs(base_spec())
    spec["clusters"][0].pop("eastWestGateway", None)
    plan = plan_of(spec)
    order = _schedule(plan)
    assert order == _schedule(plan_of(spec))
    assert sorted(order) == sorted((cp.cluster, s.name) for cp in plan.clusters for s in cp.steps)
    at = {node: i for i, node in enumerate(order)}
    for cp in plan.clusters:
        for step in cp.steps:
            for dep in step.after:
                assert at[(cp.cluster, dep)] < at[(cp.cluster, step.name)]
    for dep in plan.order:
        assert at[(dep.target.cluster, dep.target.step)] < at[(dep.waiter.cluster, dep.waiter.step)]
    # east's remote secret holds a kubeconfig built from west's reader token.
    assert at[("west", "reader-token")] < at[("east", "remote-secrets")]
    assert at[("east", "reader-token")] < at[("west", "remote-secrets")]


def test_gateway_address_from_ingress_ip_or_hostname() -> None:
    path = "meshboot:clusters[0].eastWestGateway.address"
    assert _ingress_address("a", path, {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}) \
        == "1.2.3.4"
    assert _ingress_address("a", path, {"loadBalancer": {"ingress": [
        {"hostname": "lb.example.com"}]}}) == "lb.example.com"
    with pytest.raises(ProgramError, match=r"clusters\[0\]\.eastWestGateway\.address"):
        _ingress_address("a", path, {"loadBalancer": {}})
