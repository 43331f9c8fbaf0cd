"""Field-level diff lines: paths, list matching, caps and what is never shown."""

from __future__ import annotations

from typing import Any

from stacks.render_diff import FIELDS_PER_OBJECT, _object_changes, object_fields, show
from stacks.render_tree import ObjectKey

VS = ObjectKey("networking.istio.io/v1", "VirtualService", "bookinfo", "reviews")
SECRET = ObjectKey("v1", "Secret", "istio-system", "cacerts")


def _vs(weights: list[int], routes: list[str] | None = None) -> dict[str, Any]:
    names = routes or [f"r{i}" for i in range(len(weights))]
    return {"metadata": {"name": "reviews", "labels": {"app.kubernetes.io/managed-by": "meshboot"}},
            "spec": {"http": [{"name": n, "route": [{"weight": w}]}
                              for n, w in zip(names, weights, strict=True)]}}


def test_dotted_paths_and_quoted_keys() -> None:
    old, new = _vs([10, 90]), _vs([20, 90])
    new["metadata"]["labels"]["app.kubernetes.io/part-of"] = "mesh"
    assert object_fields(VS, old, new) == [
        'metadata.labels["app.kubernetes.io/part-of"]: + mesh',
        "spec.http[0].route[0].weight: 10 -> 20",
    ]


def test_named_list_entries_are_matched_by_name() -> None:
    old = _vs([10, 90], ["canary", "default"])
    new = _vs([5, 10, 90], ["header", "canary", "default"])
    lines = object_fields(VS, old, new)
    # An insertion is one line, not a shift of every later entry.
    assert lines == ["spec.http[0]: + {name: header, 1 more key}"]
    dropped = object_fields(VS, new, old)
    assert dropped == ["spec.http[0]: - {name: header, 1 more key}"]


def test_cap_per_object() -> None:
    n = FIELDS_PER_OBJECT + 3
    changes = _object_changes({VS: _vs([1] * n)}, {VS: _vs([2] * n)})
    assert len(changes) == 1 and len(changes[0].fields) == FIELDS_PER_OBJECT
    assert changes[0].more == 3


def test_values_never_shown_whole() -> None:
    key = ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
           "-----END PRIVATE KEY-----\n")
    assert "MIGH" not in show(key) and "private key" in show(key)
    cert = "-----BEGIN CERTIFICATE-----\nMIIB6DCCAY+gAwIBAgIU\n-----END CERTIFICATE-----\n"
    assert "MIIB" not in show(cert) and "3 lines" in show(cert)
    assert show("x" * 200).startswith("<200 characters, sha256:")
    assert show("10") == '"10"' and show(10) == "10" and show("STRICT") == "STRICT"


def test_secret_fields_name_keys_only() -> None:
    old = {"kind": "Secret", "type": "Opaque", "metadata": {"name": "cacerts"},
           "stringData": {"ca-key.pem": "old-secret-value", "root-cert.pem": "same"}}
    new = {"kind": "Secret", "type": "Opaque", "metadata": {"name": "cacerts"},
           "data": {"ca-key.pem": "bmV3LXNlY3JldC12YWx1ZQ==", "root-cert.pem": "c2FtZQ=="}}
    lines = object_fields(SECRET, old, new)
    assert lines == ['data["ca-key.pem"]: changed (value hidden)']
    changes = _object_changes({SECRET: old}, {SECRET: new})
    assert "secret-value" not in repr(changes) and "bmV3" not in repr(changes)
    assert changes[0].summary.startswith("type Opaque, content sha256:")
    # The same bytes written as data instead of stringData: no change.
    moved = {**old, "stringData": None, "data": {"ca-key.pem": "b2xkLXNlY3JldC12YWx1ZQ==",
                                                  "root-cert.pem": "c2FtZQ=="}}
    del moved["stringData"]
    assert _object_changes({SECRET: old}, {SECRET: moved}) == []


def test_secret_fields_beyond_the_api_are_hidden_too() -> None:
    """A hand-edited Secret may hold a short token anywhere: only its identity shows."""
    old = {"kind": "Secret", "type": "Opaque", "metadata": {"name": "s", "labels": {"a": "1"}},
           "spec": {"token": "tok-old-123"}, "extra": "x1"}
    new = {"kind": "Secret", "type": "Opaque", "metadata": {"name": "s", "labels": {"a": "2"}},
           "spec": {"token": "tok-new-456"}, "more": "y"}
    lines = object_fields(SECRET, old, new)
    assert lines == ["extra: - (value hidden)", "more: + (value hidden)",
                     "spec: changed (value hidden)", 'metadata.labels.a: "1" -> "2"']
    assert not any(v in "\n".join(lines) for v in ("tok-", "x1", ": y"))
