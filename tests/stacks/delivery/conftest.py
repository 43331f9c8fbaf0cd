"""One render per mesh, shared by the delivery tests (rendering is the slow part)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.stacks.delivery.specs import delivery_spec, render_tree


@pytest.fixture(scope="session", params=["istio", "linkerd"])
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """(provider, cluster -> objects) of ``delivery_spec(provider)`` rendered by the CLI."""
    provider = request.param
    return provider, render_tree(tmp_path_factory.mktemp(provider), delivery_spec(provider))
