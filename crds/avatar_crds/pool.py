"""WorkerPool: warm workers of one shape for the quality tiers it serves, each worker serving up
to `slotsPerWorker` sessions at once, with a buffer of free slots kept ready ahead of demand
(the model of Agones' buffer autoscaler). The spec is the platform's (one pool per enabled
tier, once the chart ships them); the status is the operator's pool controller's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from avatar_crds.cel import VALIDATIONS_KEY, Rule, rules
from avatar_crds.enums import Quality
from avatar_crds.meta import API_VERSION, CamelModel, ObjectMeta
from avatar_crds.session import DNS_SUBDOMAIN, MAX_SLOTS_PER_WORKER, Condition

MAX_WORKERS = 1000
MAX_BUFFER_SLOTS = MAX_WORKERS * MAX_SLOTS_PER_WORKER

BUFFER_PERCENT = r"^[1-9]?[0-9]%$"
"""0% to 99%: a buffer of 100% of the slots would have no finite size."""
_BUFFER_RULE = Rule(
    f"type(self) == int ? (self >= 0 && self <= {MAX_BUFFER_SLOTS})"
    f" : self.matches('{BUFFER_PERCENT}')",
    f"buffer must be a number of slots from 0 to {MAX_BUFFER_SLOTS}, or a percentage of the"
    ' pool\'s slots from 0% to 99% (as "25%")',
)

Buffer = Annotated[
    Annotated[int, Field(strict=True, ge=0, le=MAX_BUFFER_SLOTS)]
    | Annotated[str, Field(pattern=BUFFER_PERCENT)],
    # The API server's int-or-string: a JSON number or a string, checked by the CEL rule.
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, VALIDATIONS_KEY: [_BUFFER_RULE.as_schema()]}
    ),
]
"""Free slots to keep ready: a count, or a percentage of all the pool's slots."""

# Kubernetes' resource.Quantity, as its own OpenAPI schema spells it: "2", "500m", "8Gi", "1e3".
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY)]
# Keys (cpu, memory, ...) are left to the API server's check of the pods made from them.
ResourceList = Annotated[dict[str, Quantity], Field(max_length=16)]


class ResourceRequirements(CamelModel):
    """CPU, memory and the like of one worker, as quoted quantities ("2", "8Gi"). GPUs are not
    here: `gpus` and `gpuResourceName` set them."""

    requests: ResourceList = Field(default_factory=dict)
    limits: ResourceList = Field(default_factory=dict)


_EXISTS_HAS_NO_VALUE = Rule(
    "self.operator != 'Exists' || !has(self.value) || self.value == ''",
    "a toleration with operator Exists takes no value",
)
_NO_KEY_NEEDS_EXISTS = Rule(
    "self.operator == 'Exists' || (has(self.key) && self.key != '')",
    "a toleration without a key must use operator Exists",
)
_SECONDS_ONLY_FOR_NO_EXECUTE = Rule(
    "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
    "tolerationSeconds applies only to effect NoExecute",
)


class Toleration(CamelModel):
    """A Kubernetes toleration, with the API server's own rules for a pod's tolerations."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            _EXISTS_HAS_NO_VALUE, _NO_KEY_NEEDS_EXISTS, _SECONDS_ONLY_FOR_NO_EXECUTE
        )
    )

    key: Annotated[str, Field(max_length=316)] | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: Annotated[str, Field(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: Annotated[int, Field(ge=0, le=86400 * 365)] | None = None

    @model_validator(mode="after")
    def _kubernetes_rules(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError(_EXISTS_HAS_NO_VALUE.message)
        if self.operator != "Exists" and not self.key:
            raise ValueError(_NO_KEY_NEEDS_EXISTS.message)
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(_SECONDS_ONLY_FOR_NO_EXECUTE.message)
        return self


_GPUS_NOT_IN_RESOURCES = Rule(
    "!has(self.resources)"
    " || ((!has(self.resources.requests) || !(self.gpuResourceName in self.resources.requests))"
    " && (!has(self.resources.limits) || !(self.gpuResourceName in self.resources.limits)))",
    "GPUs are set by gpus (and gpuResourceName), not in resources",
)


ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]


class WorkerTemplate(CamelModel):
    """The shape of every worker pod of the pool."""

    model_config = ConfigDict(json_schema_extra=rules(_GPUS_NOT_IN_RESOURCES))

    image: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S+$")]
    image_pull_policy: ImagePullPolicy = "IfNotPresent"
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    gpus: Annotated[int, Field(ge=0, le=8)] = Field(
        default=1, description="GPUs per worker, shared by all its slots; 0 on CPU-only tiers."
    )
    gpu_resource_name: Annotated[str, Field(min_length=1, max_length=253)] = "nvidia.com/gpu"
    node_selector: Annotated[dict[str, str], Field(max_length=32)] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    runtime_class_name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)] | None = None

    @model_validator(mode="after")
    def _gpus_not_in_resources(self) -> WorkerTemplate:
        named = (self.resources.requests, self.resources.limits)
        if any(self.gpu_resource_name in resources for resources in named):
            raise ValueError(_GPUS_NOT_IN_RESOURCES.message)
        return self


_MIN_NOT_ABOVE_MAX = Rule(
    "self.minWorkers <= self.maxWorkers", "minWorkers must not be greater than maxWorkers"
)


class WorkerPoolSpec(CamelModel):
    model_config = ConfigDict(json_schema_extra=rules(_MIN_NOT_ABOVE_MAX))

    qualities: list[Quality] = Field(
        min_length=1,
        max_length=len(Quality),
        description="The quality tiers whose sessions this pool's workers serve.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    worker: WorkerTemplate
    slots_per_worker: Annotated[int, Field(ge=1, le=MAX_SLOTS_PER_WORKER)] = Field(
        default=1, description="Sessions one worker serves at once, sharing its loaded renderer."
    )
    min_workers: Annotated[int, Field(ge=0, le=MAX_WORKERS)] = 0
    max_workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)]
    buffer: Buffer = Field(
        default=1,
        description="Free ready slots to keep beyond those in use and those queued sessions "
        'need: a number of slots, or a percentage of all the pool\'s slots ("25%"). '
        "0 with one slot per worker starts a worker per session, on demand.",
    )
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(
        default=300,
        description="How long a worker must have held no session before it may be removed.",
    )

    @field_validator("qualities")
    @classmethod
    def _unique(cls, value: list[Quality]) -> list[Quality]:
        if len(set(value)) != len(value):
            raise ValueError("qualities must not repeat a quality")
        return value

    @model_validator(mode="after")
    def _min_not_above_max(self) -> WorkerPoolSpec:
        if self.min_workers > self.max_workers:
            raise ValueError(_MIN_NOT_ABOVE_MAX.message)
        return self


Count = Annotated[int, Field(ge=0)]


class PoolCondition(Condition):
    """A standard Kubernetes condition (`metav1.Condition`), the same model as a session's; the
    pool controller sets them."""


class WorkerPoolStatus(CamelModel):
    """Written by the operator's pool controller. Draining workers take no new session and are
    removed once their last one has left; they count in neither desired nor free slots."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The metadata.generation of the spec last acted on."
    )
    desired_workers: Count = 0
    ready_workers: Count = Field(default=0, description="Not draining, renderer loaded.")
    draining_workers: Count = 0
    free_slots: Count = Field(default=0, description="Free slots on ready, undrained workers.")
    busy_slots: Count = Field(default=0, description="Sessions bound to the pool's workers.")
    conditions: list[PoolCondition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


POOL_NAME_MAX_LENGTH = 63
# On the whole resource, the only level whose CEL may read metadata.name.
POOL_NAME_FITS_A_LABEL = Rule(
    f"size(self.metadata.name) <= {POOL_NAME_MAX_LENGTH}",
    f"a pool's name must fit a label value: at most {POOL_NAME_MAX_LENGTH} characters",
)
"""Its worker pods carry the pool's name as a label (`contract.LABEL_POOL`)."""


class WorkerPool(CamelModel):
    """The whole resource as the API server stores it."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["facecast.io/v1alpha1"] = API_VERSION
    kind: Literal["WorkerPool"] = "WorkerPool"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkerPoolSpec
    status: WorkerPoolStatus = Field(default_factory=WorkerPoolStatus)

    @model_validator(mode="after")
    def _name_fits_a_label(self) -> WorkerPool:
        if self.metadata.name and len(self.metadata.name) > POOL_NAME_MAX_LENGTH:
            raise ValueError(POOL_NAME_FITS_A_LABEL.message)
        return self
