"""The fixed order of every step a provider's plan can have, and the render file of each.

A step's position here is its file-name prefix in every cluster and every
environment (``10-policy.yaml`` is the policy of any Istio cluster), whichever
steps a cluster actually has. ``kubectl apply -R -f <cluster dir>`` reads
files in lexical order, so ``namespaces`` is first, then the Flux
``HelmRepository`` sources (namespaced in those namespaces, and needed by
every HelmRelease), then the steps in the order the plans add them.
"""

from __future__ import annotations

NAMESPACES = "namespaces"
# Render only: the Flux HelmRepository objects of a cluster's Helm releases.
HELM_REPOSITORIES = "helm-repositories"

STEP_ORDER: dict[str, tuple[str, ...]] = {
    "istio": (
        NAMESPACES,
        HELM_REPOSITORIES,
        "cacerts",
        "istio-base",
        "reader-token",
        "istiod",
        "eastwest-gateway",
        "mesh-gateways",
        "remote-secrets",
        "policy",
        "observability",
        "kiali-account",
        "kiali-token",
        "kiali-remote-secrets",
        "kiali",
        "flagger",
        "delivery",
    ),
    "linkerd": (
        NAMESPACES,
        HELM_REPOSITORIES,
        "identity-issuer",
        "linkerd-crds",
        "linkerd-control-plane",
        "linkerd-multicluster",
        "remote-access-token",
        "link-credentials",
        "links",
        "service-export",
        "policy",
        "observability",
        "linkerd-viz",
        "flagger",
        "delivery",
    ),
}


def step_file(provider: str, step: str) -> str:
    """``NN-<step>.yaml``: NN is the step's position (from 01) in the provider's order."""
    order = STEP_ORDER[provider]
    if step not in order:
        raise KeyError(f"{provider}: step {step!r} has no place in stacks.steps.STEP_ORDER")
    return f"{order.index(step) + 1:02d}-{step}.yaml"
