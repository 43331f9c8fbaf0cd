"""`meshboot rotate root` through the real CLI: a whole rotation, phase by phase, for
Istio and Linkerd, with each phase rendered and validated strictly; the gates,
--status, --abort, and bad input (exit 2, nothing changed).

The clock is the module's seam (``scripts.rotate._now``); the stack's
passphrase KDF is made cheap for the run (Pulumi's 1,000,000 PBKDF2 rounds
would dominate it), which changes no format.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

import clusters.pulumi_secrets as pulumi_secrets
import scripts.rotate as rotate_mod
from pki.ca import CA, certs_from_pem
from scripts.cli import cli
from tests.conftest import base_spec, write_stack
from tests.support.validation import load_tree, load_valid_tree, unknown_value_paths

PASS = "rotation passphrase"
ENV = {"PULUMI_CONFIG_PASSPHRASE": PASS}
START = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)
CHARTS = {"istiod": "istio-istiod-1.30.3.values.yaml",
          "linkerd-control-plane": "linkerd-control-plane-edge-26.8.3.values.yaml"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module", autouse=True)
def fast_kdf_and_clock() -> Iterator[Clock]:
    clock = Clock()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pulumi_secrets, "PBKDF2_ITERATIONS", 1000)
        mp.setattr(rotate_mod, "_now", clock)
        yield clock


_TREES: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}


def valid_tree(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every object of a render, validated strictly once per render (keyed by its marker).

    The renders before and after the rotation are what every other render test
    validates already; of the rotation's phases, those with a two-root bundle
    (and Istio's multi-root settings) and with the new root alone are validated
    here (sign-with-new has the objects of trust-both, other certificates)."""
    key = (str(out), (out / ".meshboot-render.json").read_text())
    if key not in _TREES:
        strict = out.name in ("tree-trust-both", "tree-drop-old")
        _TREES[key] = load_valid_tree(out) if strict else load_tree(out)
    return _TREES[key]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=ENV)


def fp(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


class Env:
    """One environment going through a rotation: stack file, render dir, PKI store."""

    def __init__(self, tmp: Path, provider: str) -> None:
        spec = base_spec()
        spec["mesh"]["provider"] = provider
        if provider == "linkerd":   # render needs the gateways' addresses for the links
            for i, c in enumerate(spec["clusters"]):
                c["eastWestGateway"] = {"address": f"192.0.2.{10 + i}"}
        self.provider = provider
        self.config = write_stack(tmp, spec)
        self.out, self.pki = tmp / "out", tmp / "pki"

    def cli(self, *args: str, code: int = 0) -> str:
        result = invoke(*args)
        assert result.exit_code == code, result.output
        return str(result.output)

    def rotate(self, *args: str, code: int = 0) -> str:
        return self.cli("rotate", "root", "--config", str(self.config), "--out", str(self.out),
                        *args, code=code)

    def render(self) -> str:
        return self.cli("render", "--config", str(self.config), "--out", str(self.out),
                        "--pki-dir", str(self.pki))

    def rotation(self) -> dict[str, Any] | None:
        doc = yaml.load(self.config.read_text(), Loader=yaml.BaseLoader)
        result: dict[str, Any] | None = doc["config"]["meshboot:pki"].get("rotation")
        return result

    def root_cert(self) -> x509.Certificate:
        doc = yaml.load(self.config.read_text(), Loader=yaml.BaseLoader)
        return x509.load_pem_x509_certificate(
            doc["config"]["meshboot:pki"]["rootCa"]["certPem"].encode())


def bundles(out: Path, provider: str) -> dict[str, list[str]]:
    """cluster -> fingerprints of the trust bundle in every place the render puts it."""
    result: dict[str, list[str]] = {}
    tree = valid_tree(out)   # every object strictly valid
    for cluster, objs in tree.items():
        pems: list[str] = []
        for o in objs:
            if provider == "istio" and o["kind"] == "Secret" and o["metadata"]["name"] == "cacerts":
                pems.append(o["stringData"]["root-cert.pem"])
            if provider == "linkerd" and o["kind"] == "ConfigMap" \
                    and o["metadata"]["name"] == "linkerd-identity-trust-roots":
                pems.append(o["data"]["ca-bundle.crt"])
            if provider == "linkerd" and o["kind"] == "Secret" \
                    and o["metadata"]["name"] == "linkerd-identity-issuer":
                pems.append(o["stringData"]["ca.crt"])
            if o["kind"] == "HelmRelease":
                values = o["spec"]["values"]
                chart = o["spec"]["chart"]["spec"]["chart"]
                if chart in CHARTS:
                    assert unknown_value_paths(values, CHARTS[chart]) == []
                if "identityTrustAnchorsPEM" in values:
                    pems.append(values["identityTrustAnchorsPEM"])
        assert len(set(pems)) == 1, f"{cluster}: the bundle differs between objects"
        result[cluster] = [fp(c) for c in certs_from_pem(pems[0])]
    return result


def signing_root(out: Path, provider: str, cluster: str) -> str:
    """The root the cluster's intermediate / issuer (as rendered) chains to."""
    for o in valid_tree(out)[cluster]:
        if provider == "istio" and o["kind"] == "Secret" and o["metadata"]["name"] == "cacerts":
            return fp(certs_from_pem(o["stringData"]["cert-chain.pem"])[-1])
        if provider == "linkerd" and o["kind"] == "Secret" \
                and o["metadata"]["name"] == "linkerd-identity-issuer":
            issuer = certs_from_pem(o["stringData"]["tls.crt"])[0]
            anchors = certs_from_pem(o["stringData"]["ca.crt"])
            signer = [a for a in anchors if a.subject == issuer.issuer
                      and _signed_by(issuer, a)]
            return fp(signer[0])
    raise AssertionError("no PKI Secret")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001
        return False
    return True


def istiod_values(out: Path, cluster: str) -> dict[str, Any]:
    for o in valid_tree(out)[cluster]:
        if o["kind"] == "HelmRelease" and o["spec"]["chart"]["spec"]["chart"] == "istiod":
            values: dict[str, Any] = o["spec"]["values"]
            return values
    raise AssertionError("no istiod release")


@pytest.fixture(scope="module", params=["istio", "linkerd"])
def flow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         fast_kdf_and_clock: Clock) -> dict[str, Any]:
    """A whole rotation; each phase's render copied aside, the CLI's answers kept."""
    clock = fast_kdf_and_clock
    clock.now = START
    tmp = tmp_path_factory.mktemp(f"rotate-{request.param}")
    env = Env(tmp, request.param)
    seen: dict[str, Any] = {"env": env, "trees": {}}

    def snapshot(name: str) -> None:
        shutil.copytree(env.out, tmp / f"tree-{name}")
        seen["trees"][name] = tmp / f"tree-{name}"

    env.cli("pki", "init", "--config", str(env.config))
    old = env.root_cert()
    env.render()
    snapshot("before")
    seen["start"] = env.rotate()
    rot = env.rotation()
    assert rot is not None
    new = x509.load_pem_x509_certificate(rot["newRoot"]["certPem"].encode())
    seen["old"], seen["new"] = fp(old), fp(new)
    seen["refused_unrendered"] = env.rotate("--advance", code=2)
    env.render()
    snapshot("trust-both")
    seen["status_trust_both"] = env.rotate("--status")
    env.rotate("--advance", "--cluster", "east")
    seen["east_ahead"] = env.rotation()
    seen["east_again_refused"] = env.rotate("--advance", "--cluster", "east", code=2)
    env.render()
    snapshot("east-signs")
    env.rotate("--advance")          # west follows: sign-with-new everywhere
    seen["render_sign_with_new"] = env.render()
    snapshot("sign-with-new")
    seen["drop_refused"] = env.rotate("--advance", code=2)
    seen["status_wait"] = env.rotate("--status")
    clock.now = START + dt.timedelta(hours=25, minutes=1)
    env.rotate("--advance")
    seen["abort_refused"] = env.rotate("--abort", code=2)
    env.render()
    snapshot("drop-old")
    seen["finish"] = env.rotate("--advance")
    seen["after_finish"] = env.rotation()
    seen["root_after"] = fp(env.root_cert())
    seen["render_after"] = env.render()
    snapshot("done")
    seen["render_again"] = env.render()
    return seen


def test_render_says_why_intermediates_were_reissued(flow: dict[str, Any]) -> None:
    """Re-issued under the new root: the summary names the root change, not a new store."""
    line = next(x for x in flow["render_sign_with_new"].splitlines()
                if x.startswith("issued intermediate CAs for:"))
    assert "new PKI store" not in line
    assert "root_fingerprint" in line and flow["new"] in line, line


def test_start_writes_the_new_root_as_a_secure_value(flow: dict[str, Any]) -> None:
    env: Env = flow["env"]
    assert "phase trust-both" in flow["start"] and flow["new"] in flow["start"]
    assert flow["old"] != flow["new"]
    # the whole rotation block is gone at the end; the new root is the stack's root
    assert flow["after_finish"] is None
    assert flow["root_after"] == flow["new"]
    # the finished stack file holds the new root's key as a secure value that opens
    # with the stack's passphrase to the key of the new root certificate
    from clusters.pulumi_secrets import crypter_for_stack

    doc = yaml.load(env.config.read_text(), Loader=yaml.BaseLoader)
    rc = doc["config"]["meshboot:pki"]["rootCa"]
    assert set(rc["keyPem"]) == {"secure"}
    key_pem = crypter_for_stack(doc, ENV).decrypt(rc["keyPem"]["secure"])
    assert CA.from_pem(rc["certPem"], key_pem).fingerprint == flow["new"]


def test_each_phase_renders_its_bundle_and_signing_root(flow: dict[str, Any]) -> None:
    trees, old, new, provider = flow["trees"], flow["old"], flow["new"], flow["env"].provider
    want = {"before": ([old], old, old), "trust-both": ([old, new], old, old),
            "sign-with-new": ([old, new], new, new), "drop-old": ([new], new, new),
            "done": ([new], new, new)}
    for name, (bundle, east_signs, west_signs) in want.items():
        got = bundles(trees[name], provider)
        assert got == {"east": bundle, "west": bundle}, name
        assert signing_root(trees[name], provider, "east") == east_signs, name
        assert signing_root(trees[name], provider, "west") == west_signs, name
    # --advance --cluster east: east signs with the new root, west not yet
    assert signing_root(trees["east-signs"], provider, "east") == new
    assert signing_root(trees["east-signs"], provider, "west") == old
    assert flow["east_ahead"]["clusters"] == {"east": "sign-with-new"}


def test_marker_records_what_each_phase_rendered(flow: dict[str, Any]) -> None:
    import hashlib

    marker = json.loads((flow["trees"]["trust-both"] / ".meshboot-render.json").read_text())
    for cluster in ("east", "west"):
        entry = marker["trust"][cluster]
        assert entry["roots"] == [flow["old"], flow["new"]]
        assert entry["signing_root"] == flow["old"]
    # bundle_sha256 is the SHA-256 of the bundle as rendered (what Linkerd's
    # linkerd.io/trust-root-sha256 annotation hashes)
    objs = valid_tree(flow["trees"]["trust-both"])["east"]
    if flow["env"].provider == "linkerd":
        pem = next(o for o in objs if o["kind"] == "ConfigMap")["data"]["ca-bundle.crt"]
    else:
        pem = next(o for o in objs if o["kind"] == "Secret"
                   and o["metadata"]["name"] == "cacerts")["stringData"]["root-cert.pem"]
    assert marker["trust"]["east"]["bundle_sha256"] == hashlib.sha256(pem.encode()).hexdigest()


def test_istio_multi_root_settings_only_during_the_rotation(flow: dict[str, Any]) -> None:
    if flow["env"].provider != "istio":
        pytest.skip("istiod settings")
    for name in ("trust-both", "sign-with-new", "drop-old"):
        values = istiod_values(flow["trees"][name], "east")
        assert values["env"] == {"ISTIO_MULTIROOT_MESH": "true"}
        metadata = values["meshConfig"]["defaultConfig"]["proxyMetadata"]
        assert metadata["PROXY_CONFIG_XDS_AGENT"] == "true"
    for name in ("before", "done"):
        values = istiod_values(flow["trees"][name], "east")
        assert "env" not in values and "PROXY_CONFIG_XDS_AGENT" not in json.dumps(values)


def test_gates_refuse_and_say_why(flow: dict[str, Any]) -> None:
    assert "has not been rendered" in flow["refused_unrendered"] \
        or "does not hold phase trust-both" in flow["refused_unrendered"]
    assert "nothing was changed" in flow["refused_unrendered"]
    assert "already at sign-with-new" in flow["east_again_refused"]
    assert "never more than one phase apart" in flow["east_again_refused"]
    # drop-old before the workload-certificate lifetime: refused, with the UTC time
    allowed = (START + dt.timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"before {allowed}" in flow["drop_refused"]
    assert f"drop-old is allowed from {allowed}" in flow["status_wait"]
    assert "already dropped the old root" in flow["abort_refused"]


def test_status_shows_phase_clusters_and_what_to_apply(flow: dict[str, Any]) -> None:
    status = flow["status_trust_both"]
    assert "phase trust-both" in status
    assert "east: trust-both: trusts old + new, signs with old; rendered" in status
    assert "pulumi up" in status and "meshboot verify" in status
    assert "--advance to sign-with-new: allowed" in status
    if flow["env"].provider == "linkerd":
        assert "rollout restart" in status


def test_finished_rotation_renders_without_new_root_flag_or_reissue(flow: dict[str, Any]) -> None:
    assert "REPLACED" not in flow["render_after"]
    assert "issued intermediate" not in flow["render_after"]
    assert "finished" in flow["finish"]


def test_render_is_byte_identical_after_the_rotation(flow: dict[str, Any], tmp_path: Path) -> None:
    assert "issued intermediate" not in flow["render_again"]
    done, out = flow["trees"]["done"], flow["env"].out
    for f in done.rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (out / f.relative_to(done)).read_bytes(), f


# ------------------------------------------------------------------ refusals
@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path, "istio")
    e.cli("pki", "init", "--config", str(e.config))
    return e


def test_abort_from_trust_both_removes_the_rotation(env: Env) -> None:
    env.rotate()
    env.render()
    out = env.rotate("--abort")
    assert "aborted" in out and env.rotation() is None
    assert "restart meshed workloads" in out   # xDS-pushed two-root bundles stay until then
    env.render()   # back to the old root alone: the render accepts it (old was trusted)
    assert bundles(env.out, "istio")["east"] == [fp(env.root_cert())]


def test_abort_from_sign_with_new_goes_back_then_waits(env: Env, fast_kdf_and_clock: Clock) -> None:
    clock = fast_kdf_and_clock
    clock.now = START
    env.rotate()
    env.render()
    env.rotate("--advance")
    env.render()
    env.rotate("--abort")
    rot = env.rotation()
    assert rot is not None and rot["phase"] == "trust-both" and rot["abortedAt"]
    refused = env.rotate("--abort", code=2)   # the abort is not rendered (applied) yet
    assert "the abort must be applied before the new root is dropped" in refused
    env.render()
    assert signing_root(env.out, "istio", "east") == fp(env.root_cert())
    assert len(bundles(env.out, "istio")["east"]) == 2
    refused = env.rotate("--abort", code=2)
    assert "2026-12-04T09:00:00Z" in refused
    assert "--abort (drop the new root): refused now" in env.rotate("--status")
    clock.now = START + dt.timedelta(hours=26)
    env.rotate("--abort")
    assert env.rotation() is None


def test_rotation_needs_the_root_in_the_stack_file(tmp_path: Path) -> None:
    e = Env(tmp_path, "istio")
    before = e.config.read_text()
    out = e.rotate(code=2)
    assert "meshboot pki init" in out and e.config.read_text() == before


def test_second_start_refused_and_status_without_rotation(env: Env) -> None:
    assert "no root rotation in progress" in env.rotate("--status", code=2)
    env.rotate()
    before = env.config.read_text()
    assert "already in progress" in env.rotate(code=2)
    assert "--cluster applies to --advance only" in env.rotate("--abort", "--cluster", "east",
                                                               code=2)
    assert "no such cluster" in env.rotate("--advance", "--cluster", "nope", code=2)
    assert env.config.read_text() == before


def test_one_action_at_a_time(env: Env) -> None:
    """`--status --abort` is not a status that turns into an abort: refused, nothing changed."""
    env.rotate()
    before = env.config.read_text()
    for flags in (("--status", "--abort"), ("--abort", "--status"), ("--advance", "--abort")):
        out = env.rotate(*flags, code=2)
        assert "give one of --status, --advance, --abort" in out
        assert env.config.read_text() == before


def test_printed_commands_survive_a_space_in_the_path(tmp_path: Path) -> None:
    """The commands rotate prints are pasted into a shell: a stack file (and render) in a
    directory with a space must come out as one word each."""
    home = tmp_path / "my envs"
    home.mkdir()
    e = Env(home, "istio")
    e.config = e.config.rename(home / "Pulumi.staging.yaml")
    e.out = home / "out dir"
    e.cli("pki", "init", "--config", str(e.config))
    started = e.rotate()
    e.render()
    status = e.rotate("--status")
    render_line = next(line for line in status.splitlines() if "meshboot render" in line)
    words = shlex.split(render_line.split("1. ", 1)[1].split(",", 1)[0])
    assert words == ["meshboot", "render", "--config", str(e.config), "--out", str(e.out)]
    advance = started.split("then `", 1)[1].split("`", 1)[0]
    assert shlex.split(advance) == ["meshboot", "rotate", "root", "--config", str(e.config),
                                    "--advance"]


def test_skipping_a_phase_by_hand_is_refused_by_render(env: Env) -> None:
    """A stack file edited straight to drop-old: render refuses the root change."""
    env.render()
    env.rotate()
    text = env.config.read_text().replace("phase: \"trust-both\"", "phase: \"drop-old\"")
    env.config.write_text(text)
    out = env.cli("render", "--config", str(env.config), "--out", str(env.out),
                  "--pki-dir", str(env.pki), code=2)
    assert "a phase was skipped" in out


def test_enterprise_new_root(env: Env, tmp_path: Path) -> None:
    root = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=100)
    (tmp_path / "c.pem").write_text(root.cert_pem)
    (tmp_path / "k.pem").write_text(root.key_pem)
    out = env.rotate("--new-root-cert", str(tmp_path / "c.pem"),
                     "--new-root-key", str(tmp_path / "k.pem"))
    assert root.fingerprint in out
    rot = env.rotation()
    assert rot is not None and rot["newRoot"]["certPem"].strip() == root.cert_pem.strip()
    assert root.key_pem.split("\n")[1] not in env.config.read_text()


def _with_rotation(env: Env, rotation: Any) -> Path:
    doc = yaml.safe_load(env.config.read_text())
    doc["config"]["meshboot:pki"]["rotation"] = rotation
    env.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return env.config


@pytest.mark.parametrize(("rotation", "path", "message"), [
    ({"phase": "trust-both"}, "meshboot:pki.rotation.newRoot", "required"),
    ({"phase": "rotate-now", "newRoot": {"certPem": "x", "keyPem": {"secure": "v1:a:b"}}},
     "meshboot:pki.rotation.phase", "trust-both"),
    ({"phase": 7, "newRoot": {}}, "meshboot:pki.rotation.phase", "trust-both"),
    ({"phase": True, "newRoot": {}}, "meshboot:pki.rotation.phase", ""),
    ({"phase": 2, "newRoot": {}}, "meshboot:pki.rotation.newRoot.certPem", "required"),
    ({"phase": "trust-both", "newRoot": {"certPem": "CERT", "keyPem": "-----BEGIN PRIVATE KEY"}},
     "meshboot:pki.rotation.newRoot.keyPem", "secure value"),
    ({"phase": "trust-both", "clusters": {"east": "drop-old"}, "newRoot": {}},
     "meshboot:pki.rotation.clusters.east", "one phase apart"),
    ({"phase": "trust-both", "clusters": {"mars": "sign-with-new"}, "newRoot": {}},
     "meshboot:pki.rotation.clusters.mars", "no cluster named"),
    ({"phase": "trust-both", "since": "yesterday", "newRoot": {}},
     "meshboot:pki.rotation.since", "ISO 8601"),
    ({"phase": "trust-both", "newRoot": {"certPem": "not a cert", "keyPem": "k"}, "extra": 1},
     "meshboot:pki.rotation.extra", ""),
    ("trust-both", "meshboot:pki.rotation", ""),
])
def test_bad_rotation_spec(env: Env, rotation: Any, path: str, message: str) -> None:
    _with_rotation(env, rotation)
    before = env.config.read_text()
    for args in (["rotate", "root", "--config", str(env.config), "--status"],
                 ["render", "--config", str(env.config), "--out", str(env.out),
                  "--pki-dir", str(env.pki)]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert path in result.output and message in result.output, result.output
        assert "Traceback" not in result.output
    assert env.config.read_text() == before and not env.out.exists()


def test_unusable_new_root_is_a_spec_error(env: Env) -> None:
    env.rotate()
    doc = yaml.safe_load(env.config.read_text())
    rc = doc["config"]["meshboot:pki"]["rootCa"]
    doc["config"]["meshboot:pki"]["rotation"]["newRoot"]["certPem"] = rc["certPem"]
    env.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = invoke("render", "--config", str(env.config), "--out", str(env.out),
                    "--pki-dir", str(env.pki))
    assert result.exit_code == 2
    assert "meshboot:pki.rotation.newRoot" in result.output
    assert not env.out.exists()


def test_start_with_a_root_from_files_adds_the_encryption_salt(tmp_path: Path) -> None:
    root = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=100)
    (tmp_path / "root.pem").write_text(root.cert_pem)
    (tmp_path / "root-key.pem").write_text(root.key_pem)
    spec = base_spec()
    spec["pki"]["rootCa"] = {"certFile": "root.pem", "keyFile": "root-key.pem"}
    e = Env(tmp_path, "istio")
    e.config = write_stack(tmp_path, spec)
    out = e.rotate()
    assert "added encryptionsalt" in out
    doc = yaml.safe_load(e.config.read_text())
    assert doc["encryptionsalt"].startswith("v1:")
    assert doc["config"]["meshboot:pki"]["rootCa"] == {"certFile": "root.pem",
                                                       "keyFile": "root-key.pem"}
    e.render()
    assert len(bundles(e.out, "istio")["east"]) == 2


def test_advance_finds_the_last_render_without_out(env: Env) -> None:
    """render --out anywhere; rotate root without --out reads what that render recorded."""
    env.rotate()
    env.render()
    result = invoke("rotate", "root", "--config", str(env.config), "--status")
    assert result.exit_code == 0
    assert "east: trust-both: trusts old + new, signs with old; rendered" in result.output
    assert str(env.out) in result.output
    result = invoke("rotate", "root", "--config", str(env.config), "--advance")
    assert result.exit_code == 0, result.output
    # sign-with-new is not rendered yet: the record says so
    refused = invoke("rotate", "root", "--config", str(env.config), "--advance")
    assert refused.exit_code == 2
    assert "does not hold phase sign-with-new" in refused.output
    record = env.config.parent / ".meshboot" / "dev" / "rotation-render.json"
    assert json.loads(record.read_text())["out"] == str(env.out)


def test_drop_old_waits_from_the_sign_with_new_render(env: Env, fast_kdf_and_clock: Clock) -> None:
    """sign-with-new asked for at START but rendered (applied at the earliest) 30 h later:
    the clusters signed with the old root until then, so drop-old waits from the render."""
    clock = fast_kdf_and_clock
    clock.now = START
    env.rotate()
    env.render()
    env.rotate("--advance")
    clock.now = START + dt.timedelta(hours=30)
    env.render()
    clock.now = START + dt.timedelta(hours=31)
    env.render()   # the same phase rendered again keeps the first render's time
    refused = env.rotate("--advance", code=2)
    assert "before 2026-12-05T15:00:00Z" in refused
    assert "drop-old is allowed from 2026-12-05T15:00:00Z" in env.rotate("--status")
    clock.now = START + dt.timedelta(hours=55)
    env.rotate("--advance")
    rot = env.rotation()
    assert rot is not None and rot["phase"] == "drop-old"


def test_restart_advice_per_mesh_and_phase() -> None:
    """Linkerd: every bundle change restarts the meshed pods, the multicluster gateway (which
    terminates the other clusters' mTLS) included; the issuer change does not. Istio: only
    proxies injected before the rotation (no PROXY_CONFIG_XDS_AGENT), after trust-both."""
    from pki.rotation import Phase, Rotation
    from scripts.rotate import restart_advice

    for phase in (Phase.TRUST_BOTH, Phase.DROP_OLD):
        (line,) = restart_advice("linkerd", Rotation(phase))
        assert "linkerd-multicluster rollout restart" in line and "every meshed workload" in line
    assert "before advancing" in restart_advice("linkerd", Rotation(Phase.TRUST_BOTH))[0]
    (line,) = restart_advice("linkerd", Rotation(Phase.SIGN_WITH_NEW))
    assert line.startswith("no restart") and "IssuerUpdated" in line
    (line,) = restart_advice("istio", Rotation(Phase.TRUST_BOTH))
    assert "PROXY_CONFIG_XDS_AGENT" in line and "rollout restart" in line
    assert restart_advice("istio", Rotation(Phase.SIGN_WITH_NEW))[0].startswith("no restart")
    assert restart_advice("istio", Rotation(Phase.DROP_OLD)) == []
