"""Small environments with meshboot:delivery and meshboot:observability, for both meshes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from clusters.loader import spec_from_config
from scripts.cli import cli
from stacks.build import build_plan
from stacks.plan import MeshPlan, walk_refs
from tests.conftest import base_spec, write_stack
from tests.support.validation import load_valid_tree, validate_object

CANARY = {"stable": "v1", "candidate": "v2", "weight": 10,
          "header": {"name": "x-canary", "exact": "always"},
          "analysis": {"successRate": 99.5, "latencyP99": "750ms", "stepWeight": 5}}


def delivery_spec(provider: str) -> dict[str, Any]:
    """east, west (primaries, two networks); ratings released by Flagger in both,
    reviews (a canary too) only in west, details keeps meshboot's own routes."""
    spec = base_spec()
    spec["mesh"]["provider"] = provider
    for c, ip in zip(spec["clusters"], ("192.0.2.1", "192.0.2.2"), strict=True):
        c["eastWestGateway"] = {"address": ip}
    spec["services"] = [
        {"name": "ratings", "namespace": "bookinfo", "clusters": ["east", "west"],
         "ports": [{"name": "http", "port": 9080}, {"name": "http-admin", "port": 9090}],
         "versions": ["v1", "v2"], "timeout": "3s",
         "outlierDetection": {"consecutive5xxErrors": 7},
         "release": {"canary": copy.deepcopy(CANARY)}},
        {"name": "reviews", "namespace": "bookinfo", "clusters": ["west"],
         "ports": [{"name": "http", "port": 9080, "targetPort": 8080}],
         "versions": ["v1", "v2"],
         "release": {"canary": {"stable": "v1", "candidate": "v2", "deployment": "reviews-app"}}},
        {"name": "details", "namespace": "bookinfo", "clusters": ["east", "west"],
         "ports": [{"name": "http", "port": 9080}], "versions": ["v1", "v2"],
         "release": {"blueGreen": {"active": "v1", "preview": "v2"}}},
    ]
    spec["delivery"] = {"analysis": {"interval": "30s", "threshold": 3, "maxWeight": 40}}
    spec["observability"] = {"federation": {"cluster": "east",
                                            "targets": {"west": "prometheus.west.example:9090"}}}
    return spec


def render_tree(tmp: Path, spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Render ``spec`` through the CLI; every object validated strictly."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = write_stack(tmp, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(tmp / "out"),
                                      "--pki-dir", str(tmp / "pki")])
    assert result.exit_code == 0, result.output
    return load_valid_tree(tmp / "out")


def plan_of(spec: dict[str, Any]) -> MeshPlan:
    return build_plan(spec_from_config({f"meshboot:{k}": v for k, v in spec.items()}, "spec"))


def plan_objects(spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """cluster -> the plan's objects (no PKI, no files: fast); each one without
    references validated strictly, like render's output."""
    plan = plan_of(spec)
    out = {}
    for cp in plan.clusters:
        objs = [o for step in cp.steps for o in step.objects]
        for o in objs:
            if not list(walk_refs(o)):
                validate_object(o)
        out[cp.cluster] = objs
    return out


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
