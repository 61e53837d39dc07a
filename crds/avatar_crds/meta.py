"""API group, version and the shared base model of every Facecast resource."""

from __future__ import annotations

from functools import cache
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer
from pydantic.alias_generators import to_camel

GROUP = "facecast.io"
VERSION = "v1alpha1"
API_VERSION: Final[Literal["facecast.io/v1alpha1"]] = "facecast.io/v1alpha1"
CATEGORY = "facecast"


class CamelModel(BaseModel):
    """Python names in snake_case, Kubernetes names in camelCase; unknown fields are an error."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Absent and None mean the same, except on fields marked nullable, where None is a value
        (an explicit `null` that the API server keeps instead of applying the default)."""
        data: dict[str, Any] = handler(self)
        keep = _nullable_names(type(self))
        return {key: value for key, value in data.items() if value is not None or key in keep}

    def to_k8s(self) -> dict[str, Any]:
        """The JSON-ready body Kubernetes expects: camelCase, enums as strings."""
        return self.model_dump(mode="json", by_alias=True)


def nullable() -> dict[str, Any]:
    """`json_schema_extra` for a field whose None is meaningful and must survive the API server."""
    return {"nullable": True}


@cache  # a model's fields never change, and every dump of every nested model asks
def _nullable_names(model: type[BaseModel]) -> frozenset[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("nullable"):
            names.update({name, field.alias or name})
    return frozenset(names)


class ObjectMeta(BaseModel):
    """The part of Kubernetes object metadata Facecast reads; the API server owns the rest."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    finalizers: list[str] = []


def owner_reference(
    kind: str, name: str, uid: str | None, *, controller: bool = True
) -> dict[str, Any]:
    """Makes the named Facecast object (an AvatarSession) the owner: the garbage collector
    removes what it owns with it. The controller reference also marks who manages the object,
    which the operator checks before trusting it (`controls`)."""
    reference: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid}
    if controller:
        reference.update(controller=True, blockOwnerDeletion=True)
    return reference


def controls(kind: str, uid: str | None, metadata: dict[str, Any]) -> bool:
    """Whether the Facecast object of this kind and uid is the controller owner of `metadata`."""
    return any(
        owner.get("uid") == uid
        and owner.get("kind") == kind
        and owner.get("apiVersion") == API_VERSION
        and owner.get("controller") is True
        for owner in metadata.get("ownerReferences") or []
    )
