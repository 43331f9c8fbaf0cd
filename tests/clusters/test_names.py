"""The name rules every check shares (clusters.names): the boundaries Kubernetes draws."""

from __future__ import annotations

import pytest

from clusters.names import is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value


@pytest.mark.parametrize("value,ok", [
    ("a", True), ("a-1", True), ("1a", True), ("a" * 63, True), ("a" * 64, False),
    ("", False), ("-a", False), ("a-", False), ("A", False), ("a.b", False), ("a_b", False),
])
def test_dns1123_label(value: str, ok: bool) -> None:
    assert is_dns1123_label(value) is ok


@pytest.mark.parametrize("value,ok", [
    ("a.b-c.d", True), ("a", True), (".a", False), ("a.", False), ("a..b", False), ("a.-b", False),
    (".".join(["a" * 63] * 4)[:253], True), ("a." * 126 + "ab", False),
])
def test_dns1123_subdomain(value: str, ok: bool) -> None:
    assert is_dns1123_subdomain(value) is ok


@pytest.mark.parametrize("value,ok", [
    ("version", True), ("app.kubernetes.io/version", True), ("Ver_sion.1", True),
    ("example.com/", False), ("/version", False), ("Example.com/version", False), ("-v", False),
])
def test_label_key(value: str, ok: bool) -> None:
    assert is_label_key(value) is ok


@pytest.mark.parametrize("value,ok", [
    ("", True), ("net-1", True), ("Net_1.a", True), ("a" * 63, True), ("a" * 64, False),
    ("-a", False), ("a b", False),
])
def test_label_value(value: str, ok: bool) -> None:
    assert is_label_value(value) is ok
