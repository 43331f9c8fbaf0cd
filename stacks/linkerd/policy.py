"""Traffic and security policy of the spec as Linkerd objects.

Returns the objects per cluster and the problems (policies Linkerd cannot
express are errors naming their key, never silently dropped).
"""

from __future__ import annotations

from typing import Any

from clusters.errors import Problem
from clusters.spec import Spec


def linkerd_policy_objects(spec: Spec, source: str = "spec"
                           ) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """cluster -> policy objects, and every unsupported policy as a Problem."""
    return {}, []
