"""`meshboot routes` on rendered output reproduces the splits the spec asks for.

Every expectation is computed from the values the test puts in the spec.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.stacks.istio.helpers import (
    CLUSTERS,
    REGIONS,
    render,
    routes,
    service,
    shares,
    three_cluster_spec,
)


@pytest.mark.parametrize("local_share", [80, 50, 100])
def test_local_share_across_three_clusters(tmp_path: Path, local_share: int) -> None:
    two = ["east", "west"]
    spec = three_cluster_spec([service("reviews", CLUSTERS, routing={"localShare": local_share}),
                               service("ratings", two, routing={"localShare": local_share})])
    out = render(tmp_path, spec)
    for caller in CLUSTERS:
        others = [c for c in CLUSTERS if c != caller]
        expected = {caller: float(local_share)}
        expected |= {c: (100 - local_share) / len(others) for c in others}
        result = routes(out / caller, "reviews.shop")
        assert shares(result) == {c: s for c, s in expected.items() if s}, caller
        assert all(d["labels"] == {"topology.istio.io/cluster": d["cluster"]} for d in result["destinations"])
        # ratings does not run in central: its callers spread over the clusters that run it.
        expected_two = {caller: float(local_share), **{c: 100.0 - local_share for c in two if c != caller}} \
            if caller in two else {c: 100 / len(two) for c in two}
        assert shares(routes(out / caller, "ratings")) == {c: s for c, s in expected_two.items() if s}


def test_remote_reads_its_primarys_config(tmp_path: Path) -> None:
    spec = three_cluster_spec([service("reviews", CLUSTERS, routing={"localShare": 90})])
    result = routes(render(tmp_path, spec) / "central", "reviews.shop")
    assert result["configCluster"] == "east" and result["cluster"] == "central"
    assert result["route"]["name"] == "from-central"


def test_explicit_weights(tmp_path: Path) -> None:
    weights = {"east": 60, "west": 30, "central": 10}
    out = render(tmp_path, three_cluster_spec([service("reviews", CLUSTERS, routing={"weights": weights})]))
    for caller in CLUSTERS:
        assert shares(routes(out / caller, "reviews.shop")) == {c: float(w) for c, w in weights.items()}


def test_canary_with_header_override(tmp_path: Path) -> None:
    weight, header, value = 25, "x-canary", "yes"
    canary = {"stable": "v1", "candidate": "v2", "weight": weight,
              "header": {"name": header, "exact": value}}
    spec = three_cluster_spec([service("cart", ["east", "west"], versions=["v1", "v2"],
                                       release={"canary": canary})])
    out = render(tmp_path, spec)
    for caller in CLUSTERS:
        plain = routes(out / caller, "cart")
        assert shares(plain, "subset") == {"v1": 100.0 - weight, "v2": float(weight)}
        assert {d["subset"]: d["labels"] for d in plain["destinations"]} == \
            {"v1": {"version": "v1"}, "v2": {"version": "v2"}}
        forced = routes(out / caller, "cart", "--header", f"{header}={value}")
        assert shares(forced, "subset") == {"v2": 100.0}
        other = routes(out / caller, "cart", "--header", f"{header}={value}x")
        assert shares(other, "subset") == shares(plain, "subset")


def test_ab_split(tmp_path: Path) -> None:
    default = {"v1": 40, "v2": 60}
    ab = {"groups": [{"name": "beta", "version": "v2", "header": {"name": "x-group", "prefix": "beta"}},
                     {"name": "legacy", "version": "v1", "pathPrefix": "/legacy"}],
          "default": default}
    spec = three_cluster_spec([service("search", ["west"], versions=["v1", "v2"], release={"abTest": ab})])
    out = render(tmp_path, spec)
    for caller in CLUSTERS:
        beta = routes(out / caller, "search", "--header", "X-Group=beta-testers")
        assert shares(beta, "subset") == {"v2": 100.0} and beta["route"]["name"] == "ab-beta"
        legacy = routes(out / caller, "search", "--path", "/legacy/items")
        assert shares(legacy, "subset") == {"v1": 100.0} and legacy["route"]["name"] == "ab-legacy"
        for args in ((), ("--header", "x-group=alpha"), ("--path", "/other/legacy")):
            rest = routes(out / caller, "search", *args)
            assert shares(rest, "subset") == {v: float(w) for v, w in default.items()}


def test_blue_green(tmp_path: Path) -> None:
    active, preview = "blue", "green"
    bg = {"active": active, "preview": preview, "header": {"name": "x-preview", "regex": "1|true"}}
    spec = three_cluster_spec([service("pay", ["east", "central"], versions=[active, preview],
                                       release={"blueGreen": bg})])
    out = render(tmp_path, spec)
    for caller in CLUSTERS:
        for value in ("1", "true"):
            assert shares(routes(out / caller, "pay", "--header", f"x-preview={value}"), "subset") \
                == {preview: 100.0}
        for args in ((), ("--header", "x-preview=truey")):
            assert shares(routes(out / caller, "pay", *args), "subset") == {active: 100.0}


def test_failover_chain(tmp_path: Path) -> None:
    chain = [(REGIONS["east"], REGIONS["west"]), (REGIONS["west"], REGIONS["central"]),
             (REGIONS["central"], REGIONS["east"])]
    routing = {"locality": {"failover": [{"from": a, "to": b} for a, b in chain]}}
    spec = three_cluster_spec([service("inventory", CLUSTERS, routing=routing)])
    out = render(tmp_path, spec)
    for caller in CLUSTERS:
        region = REGIONS[caller]
        result = routes(out / caller, "inventory", "--source-region", region)
        loc = result["locality"]
        assert loc["modes"] == ["failover"]
        assert [(r["from"], r["to"]) for r in loc["failover"]] == chain
        target = dict(chain)[region]
        assert loc["order"] == [region, target, "*"]
        assert loc["outlierDetection"] and "warning" not in loc
        assert shares(result, "host") == {"inventory.shop.svc.cluster.local": 100.0}


def test_timeout_retries_and_fault(tmp_path: Path) -> None:
    timeout, attempts = "2s", 4
    fault = {"header": {"name": "x-chaos", "exact": "on"}, "delay": {"fixedDelay": "3s", "percent": 30}}
    spec = three_cluster_spec([service("cart", ["east"], timeout=timeout, fault=fault,
                                       retries={"attempts": attempts, "perTryTimeout": "1s"})])
    out = render(tmp_path, spec)
    get = routes(out / "west", "cart")
    assert get["timeout"] == timeout and get["retries"]["attempts"] == attempts and get["fault"] is None
    post = routes(out / "west", "cart", "--method", "POST")
    assert post["timeout"] == timeout and post["retries"] is None
    chaos = routes(out / "west", "cart", "--header", "x-chaos=on")
    assert chaos["fault"]["delay"] == {"fixedDelay": "3s", "percentage": {"value": 30.0}}
    assert chaos["retries"]["attempts"] == attempts


def test_text_output_and_bad_service(tmp_path: Path) -> None:
    spec = three_cluster_spec([service("reviews", CLUSTERS, routing={"localShare": 70})])
    out = render(tmp_path, spec)
    result = CliRunner().invoke(cli, ["routes", "--dir", str(out / "west"), "--service", "reviews"])
    assert result.exit_code == 0, result.output
    assert "route #0 'from-west'" in result.output and " 70.00%" in result.output
    bad = CliRunner().invoke(cli, ["routes", "--dir", str(out / "west"), "--service", "nope"])
    assert bad.exit_code == 2 and "service 'nope' is not in the rendered objects" in bad.output
    missing = CliRunner().invoke(cli, ["routes", "--dir", str(tmp_path / "x"), "--service", "reviews"])
    assert missing.exit_code == 2
