"""The real ``__main__.py`` under Pulumi mocks with Flagger and observability on:
``pulumi up`` gets the same objects as render, in dependency order."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.build import build_plan
from stacks.plan import walk_refs
from tests.stacks.delivery.specs import delivery_spec
from tests.support.pulumi_harness import RELEASE, ProgramRun, run_program, with_fake_kubeconfigs


@pytest.fixture(scope="module", params=["istio", "linkerd"])
def graph(request: pytest.FixtureRequest) -> tuple[str, ProgramRun]:
    return request.param, run_program(with_fake_kubeconfigs(delivery_spec(request.param)))


def deps(run: ProgramRun, name: str) -> set[str]:
    return {run.by_urn(u).name for u in run.named(name).dependencies}


def test_flagger_then_its_objects(graph: tuple[str, ProgramRun]) -> None:
    provider, run = graph
    for cluster in ("east", "west"):
        before_flagger = "istiod" if provider == "istio" else "linkerd-viz"
        assert f"{cluster}-{before_flagger}" in deps(run, f"{cluster}-flagger")
        assert deps(run, f"{cluster}-delivery") == {f"{cluster}-flagger"}
        group = run.named(f"{cluster}-delivery")
        kinds = sorted(o["kind"] for o in group.inputs["objs"])
        assert kinds.count("Canary") == (1 if cluster == "east" else 2)
        assert kinds.count("MetricTemplate") == 2
        [flagger] = [r for r in run.of_type(RELEASE) if r.name == f"{cluster}-flagger"]
        assert flagger.inputs["values"]["clusterName"] == cluster


def test_same_objects_as_render(graph: tuple[str, ProgramRun]) -> None:
    """The ConfigGroups carry exactly the plan's objects (no references in them)."""
    provider, run = graph
    from clusters.loader import spec_from_config

    spec = spec_from_config({f"meshboot:{k}": v for k, v in delivery_spec(provider).items()}, "t")
    plan = build_plan(spec)
    for cp in plan.clusters:
        for step in ("observability", "delivery"):
            objs: Any = cp.step(step).objects
            assert not list(walk_refs(objs))
            assert run.named(f"{cp.cluster}-{step}").inputs["objs"] == list(objs)
