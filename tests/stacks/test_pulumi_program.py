"""Pulumi adapter errors: named by key path, raised before any resource exists."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from clusters.loader import spec_from_config
from stacks.pulumi_program import ProgramError, _ingress_address, all_kubeconfigs
from tests.conftest import base_spec
from tests.support.pulumi_harness import ProgramRun, run_program


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
    spec = spec_from_config({f"meshboot:{k}": v for k, v in spec_dict.items()}, "t")
    assert all_kubeconfigs(spec, tmp_path) == {"east": "apiVersion: v1\nkind: Config\n",
                                               "west": "apiVersion: v1\nkind: Config\n"}
    with pytest.raises(ProgramError, match=r"clusters\[0\]\.kubeconfig"):
        all_kubeconfigs(spec, tmp_path / "elsewhere")


def test_gateway_address_from_ingress_ip_or_hostname() -> None:
    path = "meshboot:clusters[0].eastWestGateway.address"
    assert _ingress_address("a", path, {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}) \
        == "1.2.3.4"
    assert _ingress_address("a", path, {"loadBalancer": {"ingress": [
        {"hostname": "lb.example.com"}]}}) == "lb.example.com"
    with pytest.raises(ProgramError, match=r"clusters\[0\]\.eastWestGateway\.address"):
        _ingress_address("a", path, {"loadBalancer": {}})
