"""The Facecast kinds and how each is presented as a CustomResourceDefinition."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from avatar_crds.avatar import AvatarSpec
from avatar_crds.cel import Rule
from avatar_crds.meta import GROUP
from avatar_crds.pool import POOL_NAME_FITS_A_LABEL, WorkerPoolSpec, WorkerPoolStatus
from avatar_crds.session import OWN_TOKEN_SECRET, AvatarSessionSpec, AvatarSessionStatus
from avatar_crds.tenant import TenantSpec, TenantStatus


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ResourceKind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel] | None
    printer_columns: tuple[PrinterColumn, ...]
    rules: tuple[Rule, ...] = ()
    """CEL rules on the whole object: the only place they may read `metadata.name`."""

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")

AVATAR_SESSION = ResourceKind(
    kind="AvatarSession",
    plural="avatarsessions",
    singular="avatarsession",
    short_names=("avs",),
    description="A real-time talking-avatar session: one GPU worker in the customer's room.",
    spec=AvatarSessionSpec,
    status=AvatarSessionStatus,
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase", "Where the session is in its life"),
        PrinterColumn("Avatar", "string", ".spec.avatarRef", "The Avatar it animates"),
        PrinterColumn("Quality", "string", ".spec.quality", "Renderer tier"),
        _AGE,
        PrinterColumn("First Frame", "date", ".status.worker.firstFrameAt", "First frame sent"),
        PrinterColumn("Reason", "string", ".status.reason", "Why it ended or failed", 1),
        PrinterColumn("Tenant", "string", ".spec.tenant", "Owning tenant", 1),
    ),
    rules=(OWN_TOKEN_SECRET,),
)

AVATAR = ResourceKind(
    kind="Avatar",
    plural="avatars",
    singular="avatar",
    short_names=("av",),
    description="A validated, aligned portrait that sessions animate.",
    spec=AvatarSpec,
    status=None,
    printer_columns=(
        PrinterColumn("Tenant", "string", ".spec.tenant", "Owning tenant"),
        PrinterColumn("Visibility", "string", ".spec.visibility", "public or tenant"),
        _AGE,
    ),
)

TENANT = ResourceKind(
    kind="Tenant",
    plural="tenants",
    singular="tenant",
    short_names=("fct",),
    description="A customer account: plan limits, hashed API keys and usage.",
    spec=TenantSpec,
    status=TenantStatus,
    printer_columns=(
        PrinterColumn("Max Sessions", "integer", ".spec.plan.maxConcurrentSessions"),
        PrinterColumn("Active", "integer", ".status.usage.activeSessions"),
        _AGE,
    ),
)

WORKER_POOL = ResourceKind(
    kind="WorkerPool",
    plural="workerpools",
    singular="workerpool",
    short_names=("wp",),
    description="Warm workers for the quality tiers it serves, each serving slotsPerWorker "
    "sessions at once, with a buffer of free slots kept ready.",
    spec=WorkerPoolSpec,
    status=WorkerPoolStatus,
    printer_columns=(
        PrinterColumn("Tiers", "string", ".spec.qualities", "Quality tiers it serves"),
        PrinterColumn("Ready", "integer", ".status.readyWorkers", "Workers ready, not draining"),
        PrinterColumn("Desired", "integer", ".status.desiredWorkers", "Workers it should have"),
        PrinterColumn("Free Slots", "integer", ".status.freeSlots", "Slots ready for a session"),
        PrinterColumn("Busy Slots", "integer", ".status.busySlots", "Sessions on its workers"),
        _AGE,
        PrinterColumn("Draining", "integer", ".status.drainingWorkers", "Workers emptying", 1),
        PrinterColumn("Slots", "integer", ".spec.slotsPerWorker", "Slots per worker", 1),
        PrinterColumn("Buffer", "string", ".spec.buffer", "Free slots kept ready", 1),
        PrinterColumn("Max", "integer", ".spec.maxWorkers", "Most workers it may have", 1),
    ),
    rules=(POOL_NAME_FITS_A_LABEL,),
)

ALL_KINDS: tuple[ResourceKind, ...] = (AVATAR_SESSION, AVATAR, TENANT, WORKER_POOL)
