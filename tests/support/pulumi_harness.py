"""Run the real ``__main__.py`` under Pulumi's mocks, recording the resource graph.

The mocks behave like the engine where it matters:
- PKI dynamic resources run their provider's ``create``, so Secrets carry real PEMs;
- ``Secret.get`` of a service-account-token Secret returns a token and ``ca.crt``
  as the token controller would fill them;
- ``Service.get`` of a gateway returns a load-balancer ingress address;
- URNs carry the parent's whole qualified type, as the engine builds them
  (pulumi/pulumi ``pkg/resource/deploy/deployment.go`` ``generateURN``; the SDK's
  ``MockMonitor.make_urn`` keeps only the parent's last type);
- with ``previous`` (an earlier run standing in for the stack's state), a PKI
  dynamic resource already there goes through its provider's ``diff``/``update``
  as in ``pulumi up``, so an unchanged CA keeps its certificate and key;
- ``rebuilt`` clusters hand out new tokens and load-balancer addresses (a lost
  cluster rebuilt).

The recording monitor keeps every ``RegisterResourceRequest`` (parent,
provider, dependencies, additionalSecretOutputs), which the mocks API alone
does not expose, so tests can assert on ``depends_on`` edges.
"""

from __future__ import annotations

import base64
import json
import runpy
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import resource as presource
from pulumi.runtime import settings as psettings
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from pki.provider import IntermediateCAProvider, RootCAProvider

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
PROVIDER = "pulumi:providers:kubernetes"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
MAIN = Path(__file__).resolve().parents[2] / "__main__.py"
FAKE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    parent: str
    provider: str
    dependencies: list[str]
    secret_outputs: list[str]
    read: bool = False          # a ``.get`` (ReadResource), not a managed resource


@dataclass
class ProgramRun:
    resources: list[Registered] = field(default_factory=list)
    token_reads: list[str] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Registered:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"{name}: {len(found)} resources"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)


SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def unwrap_secrets(value: Any) -> Any:
    """Plain values, as the engine hands them to a provider."""
    if is_secret_value(value):
        return unwrap_secrets(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


class EngineLikeMocks(pmocks.Mocks):
    def __init__(self, run: ProgramRun, previous: ProgramRun | None = None,
                 rebuilt: frozenset[str] = frozenset()) -> None:
        self.run = run
        self.counter = 0
        self.previous = {(r.type, r.name): r for r in previous.resources} if previous else {}
        self.rebuilt = rebuilt

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict]:
        self.counter += 1
        inputs = dict(args.inputs)
        if args.typ.startswith("pulumi-python:dynamic"):
            provider = IntermediateCAProvider() if "cluster" in inputs else RootCAProvider()
            clean = {k: unwrap_secrets(v) for k, v in inputs.items() if not k.startswith("__")}
            old = self.previous.get((args.typ, args.name))
            if old is not None:
                olds = unwrap_secrets(old.outputs)
                if not provider.diff("", olds, clean).changes:
                    return f"{args.name}-id", old.outputs
                updated = provider.update("", olds, clean)
                return f"{args.name}-id", {**inputs, **(updated.outs or {})}
            result = provider.create(clean)
            return result.id, {**inputs, **(result.outs or {})}
        if args.typ == "kubernetes:core/v1:Secret" and args.resource_id:
            # Secret.get of a token Secret: what the token controller writes.
            ns, name = args.resource_id.split("/", 1)
            self.run.token_reads.append(f"{args.name}")
            cluster = args.name.split("-", 1)[0]
            token = f"token-of-{cluster}-{name}" + ("-rebuilt" if cluster in self.rebuilt else "")
            return args.resource_id, {
                "metadata": {"name": name, "namespace": ns},
                "type": "kubernetes.io/service-account-token",
                "data": {"token": base64.b64encode(token.encode()).decode(),
                         "ca.crt": base64.b64encode(FAKE_CA.encode()).decode()},
            }
        if args.typ == "kubernetes:core/v1:Service" and args.resource_id:
            net = "203.0.113" if args.name.split("-", 1)[0] in self.rebuilt else "198.51.100"
            return args.resource_id, {
                "metadata": {"name": args.resource_id.split("/", 1)[1]},
                # From the name, not the registration order: the same in every run.
                "status": {"loadBalancer": {"ingress": [
                    {"ip": f"{net}.{zlib.crc32(args.name.encode()) % 250 + 1}"}]}},
            }
        return f"{args.name}-id", inputs

    def call(self, args: pmocks.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


class RecordingMonitor(pmocks.MockMonitor):
    def __init__(self, mocks: pmocks.Mocks, run: ProgramRun) -> None:
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            reg = self.resources[response.urn]
            self.run.resources.append(Registered(
                type=request.type, name=request.name, urn=response.urn,
                inputs=pulumi.runtime.rpc.deserialize_properties(request.object),
                outputs=dict(reg.state), parent=request.parent, provider=request.provider,
                dependencies=list(request.dependencies),
                secret_outputs=list(request.additionalSecretOutputs)))
        return response

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        if parent:
            qualified = parent.split("::")[2]
            if qualified != "pulumi:pulumi:Stack":
                type_ = f"{qualified}${type_}"
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def ReadResource(self, request: Any) -> Any:  # noqa: N802
        response = super().ReadResource(request)
        reg = self.resources[response.urn]
        self.run.resources.append(Registered(
            type=request.type, name=request.name, urn=response.urn, inputs={},
            outputs=dict(reg.state), parent=request.parent, provider=request.provider,
            dependencies=list(request.dependencies),
            secret_outputs=list(request.additionalSecretOutputs), read=True))
        return response


def config_from_spec(spec: dict[str, Any]) -> dict[str, str]:
    """``{"mesh": {...}, "clusters": [...]}`` -> Pulumi config strings."""
    return {f"meshboot:{k}": json.dumps(v) for k, v in spec.items()}


def run_program(spec: dict[str, Any], stack: str = "test", preview: bool = False,
                secret_keys: list[str] | None = None, run: ProgramRun | None = None,
                previous: ProgramRun | None = None,
                rebuilt: frozenset[str] = frozenset()) -> ProgramRun:
    """Run ``__main__.py`` with ``spec`` as the stack config; return what it registered.

    Pass ``run`` to inspect what was registered even when the program fails;
    ``previous`` and ``rebuilt``: see the module docstring.
    """
    return run_function(lambda: runpy.run_path(str(MAIN), run_name="__main__"),
                        config_from_spec(spec), stack, preview, secret_keys, run,
                        previous, rebuilt)


def run_function(program: Callable[[], Any], config: dict[str, str] | None = None,
                 stack: str = "test", preview: bool = False,
                 secret_keys: list[str] | None = None,
                 run: ProgramRun | None = None, previous: ProgramRun | None = None,
                 rebuilt: frozenset[str] = frozenset()) -> ProgramRun:
    """Run ``program`` (e.g. ``lambda: build_environment(plan)``) under the mocks."""
    run = run if run is not None else ProgramRun()
    mocks = EngineLikeMocks(run, previous, rebuilt)
    psettings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="meshboot", stack=stack, preview=preview,
                             monitor=RecordingMonitor(mocks, run))
    pulumi.runtime.set_all_config(config or {}, secret_keys or [])
    # The SDK walks the whole Python stack (pytest's included) on every registration to
    # send the engine source positions; the mocks never read them.
    stack_trace = presource._get_stack_trace
    presource._get_stack_trace = _no_stack_trace
    try:
        _sync_await(run_pulumi_func(program))
    finally:
        presource._get_stack_trace = stack_trace
    return run


def _no_stack_trace() -> Any:
    return source_pb2.StackTrace()


def with_fake_kubeconfigs(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` whose clusters carry inline kubeconfigs (no ~/.kube needed)."""
    out = json.loads(json.dumps(spec))
    for c in out["clusters"]:
        c.setdefault("kubeconfig", FAKE_KUBECONFIG)
    return out
