"""Names the API shim, the operator and the worker must agree on, in one place.

Who writes what:
- the API shim creates the AvatarSession and its token Secret (`token_secret_name`), owned by it;
- the operator creates the worker Pod (and its per-session ServiceAccount/Role), owned by it;
- the worker reads its AvatarSession and Avatar, and patches only `status.worker`;
- the operator's pool controller creates the worker pods of a WorkerPool, owned by the pool.
"""

from __future__ import annotations

from typing import Final

# Labels on every object Facecast creates for a session (pods, secrets, RBAC objects).
LABEL_SESSION: Final = "facecast.io/session"
LABEL_TENANT: Final = "facecast.io/tenant"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "facecast"
MANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
"""Everything Facecast made (the API lists and watches its sessions with it)."""

# Worker pods of a WorkerPool (avatar_crds.pool): named `<pool>-<random>` by the API server
# (generateName), owned by the pool, each serving up to its slot count of sessions at once.
COMPONENT_WORKER: Final = "worker"
LABEL_POOL: Final = "facecast.io/pool"
ANNOTATION_SLOTS: Final = "facecast.io/slots"
"""The sessions a worker serves at once: its pool's slotsPerWorker when it was created, so a
later change of the pool leaves the running workers as they are."""
ANNOTATION_DRAINING_SINCE: Final = "facecast.io/draining-since"
"""Set (an RFC 3339 time) when the pool controller drains a worker: it takes no new session,
and is deleted once its last session has left."""

# A pool worker's identity and grant. Its ServiceAccount, and the Role and RoleBinding of the
# same name, are made with the worker (`pool_worker_account_generate_name`). The Role is the
# worker's grant: the operator lists there, by resourceNames, each session bound to the worker
# (its AvatarSession, its status, its token Secret and its Avatar) and nothing else. The worker
# watches that one Role to learn of its assignments, and reads its slot in the session's
# `status.binding`.
ENV_POD_NAME: Final = "FACECAST_POD_NAME"
ENV_POOL_NAME: Final = "FACECAST_POOL_NAME"
ENV_WORKER_GRANT: Final = "FACECAST_WORKER_GRANT"
"""The Role a pool worker watches (its ServiceAccount's name)."""
ENV_WORKER_SLOTS: Final = "FACECAST_WORKER_SLOTS"
WORKER_READY_FILE: Final = "/tmp/facecast-ready"
"""A pool worker writes it once its renderer is loaded; the pod's readiness probe reads it."""

# The worker token Secret: `<session>-token`, owned by its session (a CEL rule on the CRD
# refuses a session naming any other Secret; the operator checks the owner before mounting).
TOKEN_SECRET_KEY: Final = "token"
TOKEN_SECRET_SUFFIX: Final = "-token"
TOKEN_MOUNT_DIR: Final = "/var/run/facecast/transport"

# Where avatar images live, for the API (writes) and the worker (reads).
AVATAR_STORE_DIR: Final = "/var/lib/facecast/avatars"

# The worker's environment, set by the operator on the pod.
ENV_SESSION_NAME: Final = "FACECAST_SESSION_NAME"
ENV_SESSION_NAMESPACE: Final = "FACECAST_SESSION_NAMESPACE"
ENV_TOKEN_FILE: Final = "FACECAST_TOKEN_FILE"
ENV_AVATAR_STORE: Final = "FACECAST_AVATAR_STORE"
# The standard and pro tiers' weights (the chart's worker.modelVolumeClaim is mounted there).
ENV_MODEL_DIR: Final = "FACECAST_MODEL_DIR"
MODEL_DIR: Final = "/models"
# The API's: the tiers this installation serves, comma-separated (`mock,lite`, plus `standard,pro`
# where the chart mounts the model volume); others are refused at create
# (avatar_crds.capabilities.parse_served_qualities).
ENV_SERVED_QUALITIES: Final = "FACECAST_SERVED_QUALITIES"
# Where workers may connect besides public addresses (avatar_crds.addresses.AddressAllowList),
# comma-separated; the same variables configure the API's check at create and the operator,
# which passes them on to every worker pod.
ENV_TRANSPORT_ALLOWED_HOSTS: Final = "FACECAST_TRANSPORT_ALLOWED_HOSTS"
ENV_TRANSPORT_ALLOWED_CIDRS: Final = "FACECAST_TRANSPORT_ALLOWED_CIDRS"

# The OpenAI-compatible TTS server the chart configures (`tts.openai`): the operator passes its
# URL and voices to every worker pod and mounts its API key from a Secret as a file, never as a
# variable's value. The API reads the voices too (avatar_crds.voices, ENV_TTS_OPENAI_VOICES).
ENV_TTS_OPENAI_BASE_URL: Final = "FACECAST_TTS_OPENAI_BASE_URL"
ENV_TTS_OPENAI_API_KEY_FILE: Final = "FACECAST_TTS_OPENAI_API_KEY_FILE"
ENV_TTS_OPENAI_VOICES: Final = "FACECAST_TTS_OPENAI_VOICES"
TTS_KEY_MOUNT_DIR: Final = "/var/run/facecast/tts"
TTS_KEY_FILE: Final = f"{TTS_KEY_MOUNT_DIR}/api-key"

# Each pool worker runs as its own ServiceAccount, `<pool>-worker-<random>` (generateName); an
# admission policy keeps the status writes of every account named `...-worker[-<random>]`
# inside `status.worker` (the wider match costs nothing and covers a hand-made `<x>-worker`).
WORKER_ACCOUNT_SUFFIX: Final = "-worker"
WORKER_ACCOUNT_PATTERN: Final = "-worker(-[a-z0-9]+)?$"

# The worker reports a heartbeat this often; the operator declares it lost after a few misses.
WORKER_HEARTBEAT_SECONDS: Final = 5


def session_labels(session_name: str, tenant: str, component: str) -> dict[str, str]:
    """Labels on a session and every object made for it; the tenant label drives every
    tenant query, the session label ties a pod or Secret back to its session."""
    return {
        LABEL_SESSION: session_name,
        LABEL_TENANT: tenant,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def pool_worker_labels(pool_name: str) -> dict[str, str]:
    """Labels on every worker pod of a pool; `pool_selector` finds them."""
    return {
        LABEL_POOL: pool_name,
        LABEL_COMPONENT: COMPONENT_WORKER,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def pool_selector(pool_name: str) -> str:
    """A pool's worker pods."""
    return f"{LABEL_POOL}={pool_name},{LABEL_COMPONENT}={COMPONENT_WORKER},{MANAGED_SELECTOR}"


def pool_worker_generate_name(pool_name: str) -> str:
    return f"{pool_name}-"


def pool_worker_account_generate_name(pool_name: str) -> str:
    """A pool worker's ServiceAccount (and its Role and RoleBinding): `<pool>-worker-<random>`."""
    return f"{pool_name}{WORKER_ACCOUNT_SUFFIX}-"


def tenant_selector(tenant: str) -> str:
    """A tenant's Facecast objects."""
    return f"{LABEL_TENANT}={tenant},{MANAGED_SELECTOR}"


def token_secret_name(session_name: str) -> str:
    return f"{session_name}{TOKEN_SECRET_SUFFIX}"


def token_file(key: str = TOKEN_SECRET_KEY) -> str:
    return f"{TOKEN_MOUNT_DIR}/{key}"
