"""The webhook outbox's bookkeeping: what is due, what is done, what the status wrote out.
(Deliveries themselves are `test_webhooks.py`'s; through the running operator, the
integration tests'.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from avatar_crds.enums import EndReason, Phase, WebhookEvent
from avatar_crds.session import AvatarSession, EndingSoon, PendingWebhook
from avatar_crds.tenant import Webhook
from avatar_operator.observe import Key, key_of
from avatar_operator.outbox import WebhookOutbox
from avatar_operator.webhooks import WebhookSender
from testbed.objects import T0, session_manifest

QUEUED = PendingWebhook(event=WebhookEvent.QUEUED, phase=Phase.QUEUED, occurred_at=T0)
STARTED = PendingWebhook(event=WebhookEvent.STARTED, phase=Phase.STARTING, occurred_at=T0)
HOOK = Webhook.model_validate(
    {"url": "https://hooks.example/x", "secretRef": {"name": "hook", "key": "secret"}}
)


def pending(*events: PendingWebhook) -> AvatarSession:
    status = {"phase": "starting", "pendingWebhooks": [e.model_dump(by_alias=True) for e in events]}
    return AvatarSession.model_validate(session_manifest(status=status))


class NoSecrets:
    """The Secret the tenant names is missing (a real read would answer None)."""

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return None


def outbox(hook: Webhook | None, reconciled: list[Key]) -> WebhookOutbox:
    return WebhookOutbox(
        sender=WebhookSender(max_attempts=1, timeout=1.0),  # never reached: nowhere to send
        secrets=NoSecrets(),
        webhook_of=lambda session: hook,
        on_done=reconciled.append,
    )


def test_events_with_nowhere_to_go_are_done_at_once_and_the_session_is_reconciled() -> None:
    async def scenario() -> None:
        for hook in (None, HOOK):  # no endpoint any more; an endpoint whose Secret is gone
            reconciled: list[Key] = []
            box = outbox(hook, reconciled)
            session = pending(QUEUED, STARTED)
            assert box.due(session) == [QUEUED, STARTED]

            await box.send(session)

            key = key_of(session)
            assert reconciled == [key, key]
            assert box.done(key) == {(WebhookEvent.QUEUED, "", ""), (WebhookEvent.STARTED, "", "")}
            assert box.due(session) == []  # never sent twice while the status still lists them
            await box.close()

    asyncio.run(scenario())


def test_events_written_out_of_the_status_are_forgotten_and_later_ones_stay() -> None:
    async def scenario() -> None:
        box = outbox(None, [])
        await box.send(pending(QUEUED, STARTED))
        key = key_of(pending())

        box.written_out(key, frozenset({(WebhookEvent.QUEUED, "", "")}))
        assert box.done(key) == {(WebhookEvent.STARTED, "", "")}
        box.written_out(key, frozenset({(WebhookEvent.STARTED, "", "")}))
        assert box.done(key) == frozenset()
        assert box.delivered == {}
        await box.close()

    asyncio.run(scenario())


def test_a_newer_warning_is_due_though_the_one_it_replaced_was_done() -> None:
    async def scenario() -> None:
        def warning(seconds: int) -> PendingWebhook:
            cutoff = EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=T0 + timedelta(seconds=seconds))
            return PendingWebhook(
                event=WebhookEvent.ENDING_SOON, phase=Phase.RUNNING, occurred_at=T0,
                ending_soon=cutoff,
            )  # fmt: skip

        box = outbox(None, [])
        await box.send(pending(warning(30)))
        assert box.due(pending(warning(30))) == []
        assert box.due(pending(warning(60))) == [warning(60)]
        await box.close()

    asyncio.run(scenario())
