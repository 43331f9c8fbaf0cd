"""Kubernetes name rules, written once: DNS-1123 labels and subdomains, label values.

The patterns are unanchored fragments so composite rules (``namespace/name``,
a label key's ``prefix/name``, a Sidecar egress host) are built from them
instead of repeating them.
"""

from __future__ import annotations

import re

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
"""A DNS-1123 label (without its 63-character bound): a namespace, a service, a port name."""
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
"""Dot-separated DNS-1123 labels (without the 253-character bound)."""
DOTTED_NAME = r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?"
"""Lower-case alphanumerics, '-' and '.', starting and ending alphanumeric (an object name)."""

_LABEL = re.compile(rf"^{DNS1123_LABEL}$")
_SUBDOMAIN = re.compile(rf"^{DNS1123_SUBDOMAIN}$")
# Kubernetes label values: the network name ends up in topology.istio.io/network.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY = re.compile(rf"^({DNS1123_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def is_dns1123_label(value: str) -> bool:
    """At most 63 lower-case alphanumerics and '-', starting and ending alphanumeric."""
    return len(value) <= 63 and bool(_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    """At most 253 characters of dot-separated DNS-1123 labels."""
    return len(value) <= 253 and bool(_SUBDOMAIN.match(value))


def is_label_value(value: str) -> bool:
    """A Kubernetes label value: at most 63 characters (empty allowed)."""
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def is_label_key(value: str) -> bool:
    """A Kubernetes label key: an optional DNS subdomain prefix and '/', then the name."""
    return bool(_LABEL_KEY.match(value))


PROBE_PATH = re.compile(r"^/[\x21-\x7e]*$")
"""An HTTP request path as a probe sends it: absolute, printable ASCII, no spaces."""
