"""Route timeouts in Gateway API form: the HTTPRoute CRD takes only GEP-2257 durations
(``^([0-9]{1,5}(h|m|s|ms)){1,4}$``), the spec Go durations (``1.5s``, ``1500us``)."""

from __future__ import annotations

import re

import pytest

from clusters.models import duration_seconds
from stacks.linkerd.policy import gateway_api_duration
from tests.stacks.delivery.specs import delivery_spec, find, plan_objects
from tests.support.validation import crd_schema


def request_timeout_pattern() -> str:
    schema = crd_schema("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert schema is not None
    rule = schema["properties"]["spec"]["properties"]["rules"]["items"]
    return str(rule["properties"]["timeouts"]["properties"]["request"]["pattern"])


@pytest.mark.parametrize("value", ["3s", "1.5s", "90s", "1m30s", "2h", "250ms", "1500us",
                                   "0.25h", "36h0m0.001s"])
def test_go_durations_become_gateway_api_durations_of_the_same_length(value: str) -> None:
    out = gateway_api_duration(value)
    assert re.fullmatch(request_timeout_pattern(), out), out
    assert round(duration_seconds(out) * 1000) == max(1, round(duration_seconds(value) * 1000))


def test_a_sub_millisecond_timeout_stays_on() -> None:
    # "0s" would turn the route's timeout off (GEP-1742)
    assert duration_seconds(gateway_api_duration("0.5ms")) > 0


@pytest.mark.parametrize("engine", ["flagger", "static"])
def test_route_timeouts_are_gateway_api_durations(engine: str) -> None:
    """meshboot's own HTTPRoutes and, for a Flagger canary, the Canary's service.timeout
    that Flagger copies into its HTTPRoute (fluxcd/flagger v1.44.0
    pkg/router/gateway_api.go makeHTTPRouteTimeouts)."""
    spec = delivery_spec("linkerd")
    for s in spec["services"]:
        s["timeout"] = "1.5s"
        if engine == "static":
            for key in ("deployment", "analysis"):
                s["release"].get("canary", {}).pop(key, None)
    if engine == "static":
        spec["delivery"] = {"engine": "static"}
    objs = plan_objects(spec)["west"]   # strict schema validation of every HTTPRoute
    routes = find(objs, "HTTPRoute")
    assert routes
    for route in routes:
        for rule in route["spec"]["rules"]:
            assert rule["timeouts"] == {"request": "1s500ms"}
    if engine == "flagger":
        canaries = find(objs, "Canary")
        assert canaries and {c["spec"]["service"]["timeout"] for c in canaries} == {"1s500ms"}
