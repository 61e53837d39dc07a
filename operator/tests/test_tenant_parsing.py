"""Every reconciliation reads its session's tenant: the reconciler parses each tenant once per
version, and a new version (a plan raised) is parsed again, never answered from the old one."""

from __future__ import annotations

from typing import Any, cast

from avatar_crds.meta import API_VERSION
from avatar_operator.event_pacing import EventPoster
from avatar_operator.kube import Kube
from avatar_operator.reconciler import Reconciler
from avatar_operator.settings import Settings
from avatar_operator.webhooks import WebhookSender

NS = "fc"


def tenant(version: str, max_concurrent: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": "acme", "namespace": NS, "resourceVersion": version},
        "spec": {"plan": {"maxConcurrentSessions": max_concurrent, "minutes": 1000}},
    }


class TenantView:
    """A stand-in for kopf's tenant index (handlers.py): the test replaces the body."""

    def __init__(self, body: dict[str, Any] | None) -> None:
        self.body = body

    def tenant(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.body if (namespace, name) == (NS, "acme") else None


def reconciler(view: TenantView) -> Reconciler:
    return Reconciler(
        kube=cast(Kube, None),  # never called: reading only
        view=cast(Any, view),
        settings=Settings(),
        webhooks=cast(WebhookSender, None),
        post_event=cast(EventPoster, None),
    )


def test_a_tenant_is_parsed_once_per_version_and_again_when_it_changes() -> None:
    view = TenantView(tenant("7", max_concurrent=1))
    made = reconciler(view)

    first = made._tenant(NS, "acme")
    assert first is not None
    assert first.spec.plan.max_concurrent_sessions == 1
    assert made._tenant(NS, "acme") is first  # same version: not parsed again

    view.body = tenant("8", max_concurrent=500)
    raised = made._tenant(NS, "acme")
    assert raised is not None
    assert raised.spec.plan.max_concurrent_sessions == 500


def test_a_tenant_gone_from_the_watch_is_gone_for_the_reconciler() -> None:
    view = TenantView(tenant("7", max_concurrent=1))
    made = reconciler(view)
    assert made._tenant(NS, "acme") is not None

    view.body = None

    assert made._tenant(NS, "acme") is None
    assert made._tenant(NS, "someone-else") is None
