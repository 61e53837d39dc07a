"""Operator CLI for tenants and API keys (customers never see it).

    python -m api_shim.admin create-tenant acme --max-concurrent 5 --qualities mock,lite
    python -m api_shim.admin create-key acme        # prints the new key once, on stdout
    python -m api_shim.admin list-keys acme
    python -m api_shim.admin revoke-key acme key_01J...

The namespace and kubeconfig come from FACECAST_NAMESPACE / FACECAST_KUBECONFIG or the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from pydantic import ValidationError

from api_shim.auth import generate_api_key, new_key_record
from api_shim.errors import ApiError
from api_shim.kube import Kube, KubeConflictError
from api_shim.settings import Settings
from avatar_crds import contract
from avatar_crds.enums import Quality
from avatar_crds.meta import ObjectMeta
from avatar_crds.tenant import ApiKey, Plan, Tenant, TenantSpec

MAX_CONFLICT_RETRIES = 5


class AdminError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def build_tenant(
    name: str,
    *,
    max_concurrent: int,
    minutes: int,
    max_duration: int,
    qualities: Sequence[Quality],
    requests_per_minute: int,
    allow_url_avatars: bool = False,
    allow_base64_avatars: bool = False,
    display_name: str | None = None,
) -> Tenant:
    plan = Plan(
        max_concurrent_sessions=max_concurrent,
        minutes=minutes,
        max_session_duration_seconds=max_duration,
        allowed_qualities=list(qualities),
        requests_per_minute=requests_per_minute,
        allow_url_avatars=allow_url_avatars,
        allow_base64_avatars=allow_base64_avatars,
    )
    return Tenant(
        metadata=ObjectMeta(name=name, labels={contract.LABEL_MANAGED_BY: contract.MANAGED_BY}),
        spec=TenantSpec(display_name=display_name, plan=plan),
    )


def with_key(tenant: Tenant, record: ApiKey) -> Tenant:
    spec = tenant.spec.model_copy(update={"api_keys": [*tenant.spec.api_keys, record]})
    return tenant.model_copy(update={"spec": spec})


def without_key(tenant: Tenant, key_id: str) -> Tenant:
    kept = [key for key in tenant.spec.api_keys if key.id != key_id]
    if len(kept) == len(tenant.spec.api_keys):
        raise AdminError(f"tenant {tenant.metadata.name} has no key {key_id}")
    return tenant.model_copy(update={"spec": tenant.spec.model_copy(update={"api_keys": kept})})


async def create_tenant(kube: Kube, tenant: Tenant) -> Tenant:
    try:
        return await kube.create_tenant(tenant)
    except KubeConflictError:
        raise AdminError(f"tenant {tenant.metadata.name} already exists") from None


async def create_key(kube: Kube, tenant_name: str, description: str | None) -> tuple[str, ApiKey]:
    """Add a fresh key; the returned plaintext is the only copy there will ever be."""
    key = generate_api_key()
    record = new_key_record(key, created_at=datetime.now(UTC), description=description)
    await _update_tenant(kube, tenant_name, lambda tenant: with_key(tenant, record))
    return key, record


async def revoke_key(kube: Kube, tenant_name: str, key_id: str) -> None:
    await _update_tenant(kube, tenant_name, lambda tenant: without_key(tenant, key_id))


async def list_keys(kube: Kube, tenant_name: str) -> list[ApiKey]:
    return (await _existing_tenant(kube, tenant_name)).spec.api_keys


async def _existing_tenant(kube: Kube, name: str) -> Tenant:
    tenant = await kube.get_tenant(name)
    if tenant is None:
        raise AdminError(f"no tenant {name} in namespace {kube.namespace}")
    return tenant


async def _update_tenant(kube: Kube, name: str, change: Callable[[Tenant], Tenant]) -> Tenant:
    """Read, change, write conditionally on the version read; retry if someone else wrote."""
    for _ in range(MAX_CONFLICT_RETRIES):
        tenant = await _existing_tenant(kube, name)
        try:
            return await kube.replace_tenant_spec(change(tenant))
        except KubeConflictError:
            continue
    raise AdminError(f"tenant {name} kept changing; try again")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api_shim.admin", description=__doc__)
    parser.add_argument("--namespace", help="default: $FACECAST_NAMESPACE or facecast")
    parser.add_argument("--kubeconfig", help="default: $FACECAST_KUBECONFIG, in-cluster, ~/.kube")
    commands = parser.add_subparsers(dest="command", required=True)

    tenant = commands.add_parser("create-tenant", help="create a Tenant with its plan")
    tenant.add_argument("name")
    tenant.add_argument("--max-concurrent", type=int, required=True)
    tenant.add_argument("--minutes", type=int, default=Plan().minutes)
    tenant.add_argument(
        "--max-duration", type=int, default=Plan().max_session_duration_seconds, help="seconds"
    )
    tenant.add_argument(
        "--qualities",
        default=",".join(str(quality) for quality in Plan().allowed_qualities),
        help=f"comma-separated, of: {', '.join(str(quality) for quality in Quality)}",
    )
    tenant.add_argument("--requests-per-minute", type=int, default=Plan().requests_per_minute)
    tenant.add_argument("--allow-url-avatars", action="store_true")
    tenant.add_argument("--allow-base64-avatars", action="store_true")
    tenant.add_argument("--display-name")

    key = commands.add_parser("create-key", help="mint an API key; printed once on stdout")
    key.add_argument("tenant")
    key.add_argument("--description")

    listing = commands.add_parser("list-keys", help="key ids, hints and dates (never keys)")
    listing.add_argument("tenant")

    revoke = commands.add_parser("revoke-key", help="remove a key; it stops working in seconds")
    revoke.add_argument("tenant")
    revoke.add_argument("key_id")
    return parser


async def _run(args: argparse.Namespace, kube: Kube) -> None:
    if args.command == "create-tenant":
        qualities = [Quality(item.strip()) for item in args.qualities.split(",") if item.strip()]
        created = await create_tenant(
            kube,
            build_tenant(
                args.name,
                max_concurrent=args.max_concurrent,
                minutes=args.minutes,
                max_duration=args.max_duration,
                qualities=qualities,
                requests_per_minute=args.requests_per_minute,
                allow_url_avatars=args.allow_url_avatars,
                allow_base64_avatars=args.allow_base64_avatars,
                display_name=args.display_name,
            ),
        )
        print(f"created tenant {created.metadata.name} in {kube.namespace}", file=sys.stderr)
    elif args.command == "create-key":
        key, record = await create_key(kube, args.tenant, args.description)
        print(key)
        print(
            f"created {record.id} (...{record.hint}) for tenant {args.tenant}."
            " This is the only time the key is shown.",
            file=sys.stderr,
        )
    elif args.command == "list-keys":
        for item in await list_keys(kube, args.tenant):
            made = "" if item.created_at is None else item.created_at.isoformat()
            print(f"{item.id}\t...{item.hint}\t{made}\t{item.description or ''}")
    elif args.command == "revoke-key":
        await revoke_key(kube, args.tenant, args.key_id)
        print(f"revoked {args.key_id} of tenant {args.tenant}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    overrides = {
        name: value
        for name, value in (("namespace", args.namespace), ("kubeconfig", args.kubeconfig))
        if value
    }
    settings = replace(settings, **overrides)
    try:
        asyncio.run(_run_closing(args, Kube.from_settings(settings)))
    except (AdminError, ValidationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ApiError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    return 0


async def _run_closing(args: argparse.Namespace, kube: Kube) -> None:
    try:
        await _run(args, kube)
    finally:
        await kube.aclose()


if __name__ == "__main__":
    sys.exit(main())
