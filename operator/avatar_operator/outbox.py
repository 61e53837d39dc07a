"""The webhook outbox: which of a session's pending webhook events are due to be sent, sending
them, and knowing them done until the status no longer lists them.

An event waits in `status.pendingWebhooks` (written with the transition that caused it). Once
delivered or given up on, the session is reconciled again, and that reconciliation writes it
out of the status; until then the outbox remembers it, so it is neither sent twice nor lost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from avatar_crds.session import AvatarSession, PendingWebhook
from avatar_crds.tenant import Webhook
from avatar_operator.machine import WebhookIdentity, webhook_identity
from avatar_operator.observe import Key, key_of
from avatar_operator.webhooks import WebhookSender

log = structlog.get_logger("avatar_operator")


class SecretReader(Protocol):
    async def read_secret_value(self, namespace: str, name: str, key: str) -> str | None: ...


@dataclass
class WebhookOutbox:
    sender: WebhookSender
    secrets: SecretReader
    webhook_of: Callable[[AvatarSession], Webhook | None]
    """The session's tenant's endpoint, None when it has none (any more)."""
    on_done: Callable[[Key], None]
    """Asks for the session to be reconciled again: that takes a done event out of the status."""
    delivering: set[tuple[Key, WebhookIdentity]] = field(default_factory=set)
    """Pending events being sent (or retried) now."""
    delivered: dict[Key, set[WebhookIdentity]] = field(default_factory=dict)
    """Pending events sent or given up on, until the status no longer lists them."""

    def done(self, key: Key) -> frozenset[WebhookIdentity]:
        """The session's events delivered or given up on: its next status leaves them out."""
        return frozenset(self.delivered.get(key, ()))

    def due(self, session: AvatarSession) -> list[PendingWebhook]:
        """What the status lists that is neither done nor on its way: new events, and after a
        restart those the last operator left undelivered."""
        key = key_of(session)
        done = self.delivered.get(key, set())
        return [
            pending
            for pending in session.status.pending_webhooks
            if (identity := webhook_identity(pending)) not in done
            and (key, identity) not in self.delivering
        ]

    async def send(self, session: AvatarSession) -> None:
        """Start delivering every due event of `session` (with the status just written)."""
        waiting = self.due(session)
        if not waiting:
            return
        key = key_of(session)
        hook = self.webhook_of(session)
        secret = None
        if hook is not None:
            ref = hook.secret_ref
            secret = await self.secrets.read_secret_value(key[0], ref.name, ref.key)
            if secret is None:
                log.warning("webhook_secret_missing", tenant=session.spec.tenant, session=key[1])
        for pending in waiting:
            identity = webhook_identity(pending)
            self.delivering.add((key, identity))
            on_done = functools.partial(self._finished, key, identity)
            if hook is None or secret is None:
                on_done()  # nowhere to send it (the tenant dropped its endpoint): let it go
                continue
            self.sender.send(hook.url, secret, pending, session, on_done=on_done)

    def written_out(self, key: Key, events: frozenset[WebhookIdentity]) -> None:
        """A status without `events` was written: forget them (any done meanwhile stay)."""
        done = self.delivered.get(key)
        if done is not None:
            done -= events
            if not done:
                del self.delivered[key]

    def forget(self, key: Key) -> None:
        self.delivered.pop(key, None)

    async def close(self) -> None:
        """Stop sending: what was on its way stays pending in the status, for the next start."""
        await self.sender.close()

    def _finished(self, key: Key, identity: WebhookIdentity) -> None:
        self.delivering.discard((key, identity))
        self.delivered.setdefault(key, set()).add(identity)
        self.on_done(key)
