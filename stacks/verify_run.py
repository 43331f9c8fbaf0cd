"""Running ``meshboot verify``'s checks: one client per cluster, retries with tenacity.

Only "not ready yet" is retried: a check whose rows include ``pending`` (a
Deployment rolling out, a gateway without an address, istiod ``syncing``) or
a request that could not be served yet (a 429/5xx, istiod's port not
answering through the port-forward). Configuration errors (a missing Secret, a wrong root or address,
401/403, an unknown context) are ``fail`` at the first attempt, and so is an
answer of unexpected shape (a field of another type or missing): a row
saying so, never a traceback. All checks
share one deadline, ``--wait`` after the start; a check still pending then
becomes ``fail``, its reason saying it did not become ready.

``clock`` and ``sleep`` are injected (tenacity's ``sleep`` hook, and a stop
and wait computed from ``clock``), so a test drives the retries with a fake
clock and proves which checks were retried without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_result

from clusters.kube_client import DEFAULT_TIMEOUT, Kube, KubeError, connect
from stacks.verify import Check, Finding, Status, Verifier

INTERVAL = 5.0  # seconds between attempts of a pending check
# What reading a document of an unexpected shape raises (a field of another type, missing).
MALFORMED = (TypeError, AttributeError, KeyError, ValueError, IndexError)
API_SERVER = "api-server"  # the row of a cluster whose API server cannot be used at all


@dataclass(frozen=True)
class Row:
    """One line of the table (and one object of ``--json``)."""

    cluster: str
    check: str
    status: str       # ok | warn | fail
    reason: str
    fix: str = ""
    attempts: int = 1
    config_error: bool = False  # the kubeconfig is unusable: bad input

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "check": self.check, "status": self.status,
                "reason": self.reason, "fix": self.fix, "attempts": self.attempts}


@dataclass
class Runner:
    verifier: Verifier
    base_dir: Path
    wait: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    env: dict[str, str] | None = None
    interval: float = INTERVAL

    def run(self, clusters: list[str]) -> list[Row]:
        deadline = self.clock() + self.wait
        rows: list[Row] = []
        for name in clusters:
            rows += self.cluster(name, deadline)
        rows += [_row(f) for f in self.verifier.identical_roots()]
        return rows

    def cluster(self, name: str, deadline: float) -> list[Row]:
        conn = self.verifier.plan.cluster(name).connection
        try:
            kube = connect(conn.kubeconfig, conn.context, self.base_dir, self.env, self.timeout)
        except KubeError as err:
            return [Row(name, "kubeconfig", "fail", err.reason, err.fix, config_error=True)]
        rows: list[Row] = []
        for check_name, check in self.verifier.checks(name):
            found, attempts = self.attempt(kube, name, check_name, check, deadline)
            rows += [_row(f, attempts) for f in found]
            if any(f.check == API_SERVER for f in found):
                break  # no request to this API server can succeed: one row says why
        return rows

    def attempt(self, kube: Kube, cluster: str, name: str, check: Check,
                deadline: float) -> tuple[list[Finding], int]:
        """Run ``check`` until it has no pending row or the deadline passes."""
        calls = 0

        def once() -> list[Finding]:
            nonlocal calls
            calls += 1
            try:
                return check(kube)
            except KubeError as err:
                status: Status = "pending" if err.pending else "fail"
                return [Finding(cluster, API_SERVER if err.unreachable else name, status,
                                err.reason, err.fix)]
            except MALFORMED as err:
                # A document of another shape than the API (or istiod) documents: this
                # check fails with what was wrong; the others still run.
                return [Finding(cluster, name, "fail",
                                f"an answer of unexpected shape ({type(err).__name__}: "
                                f"{str(err)[:160]})",
                                "inspect the objects this check reads (kubectl get -o yaml); "
                                "if they are well-formed, report it as a meshboot bug")]

        def stop(state: RetryCallState) -> bool:
            return self.clock() >= deadline

        def pause(state: RetryCallState) -> float:
            return max(0.0, min(self.interval, deadline - self.clock()))

        retrying = Retrying(
            retry=retry_if_result(lambda found: any(f.status == "pending" for f in found)),
            stop=stop, wait=pause, sleep=self.sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else [],
        )
        found = retrying(once)
        return [_settle(f, self.wait) for f in found], calls


def _settle(f: Finding, wait: float) -> Finding:
    """A row still pending at the deadline fails, saying it did not become ready."""
    if f.status != "pending":
        return f
    waited = f"after waiting {_duration(wait)}" if wait else "(no --wait)"
    return replace(f, status="fail", reason=f"not ready {waited}: {f.reason}")


def _row(f: Finding, attempts: int = 1) -> Row:
    return Row(f.cluster, f.check, f.status, f.reason, f.fix, attempts)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s and s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s" if s == seconds else f"{seconds:g}s"


def parse_duration(text: str) -> float:
    """``10m``, ``30s``, ``1h``, ``1m30s``, ``0`` (no wait) -> seconds; ValueError otherwise."""
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    if value.replace(".", "", 1).isdigit():
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    total, number = 0.0, ""
    seen: list[str] = []
    for ch in value:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number and ch not in seen:
            total += float(number) * units[ch]
            seen.append(ch)
            number = ""
        else:
            raise ValueError(f"{text!r} is not a duration (e.g. 10m, 30s, 1h, 0)")
    if number:
        raise ValueError(f"{text!r}: a number without a unit (s, m, h) after it")
    if seen != sorted(seen, key="hms".index):
        raise ValueError(f"{text!r}: units out of order (h, then m, then s)")
    return total
