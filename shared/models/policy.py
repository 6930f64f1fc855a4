"""The PromotePolicy API (kosmos.io/v1alpha1) as pydantic models.

These models and `shared/crds/promotepolicies.kosmos.io.yaml` describe the same object twice: the
CRD is what the API server enforces, the models are what our code reads and writes. A test walks
both schemas and fails when they drift, so a field is always added to both.

Unlike the original Kosmos CRD, the policy is cluster-scoped (the controller never used the
namespace), has a status subresource (so users cannot overwrite progress with `kubectl apply`) and
a status that is actually written: per-namespace progress instead of one `failureReason`.
"""

import difflib
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from shared.models.times import Rfc3339Time

GROUP: Final = "kosmos.io"
VERSION: Final = "v1alpha1"
KIND: Final = "PromotePolicy"
PLURAL: Final = "promotepolicies"


Count = Annotated[int, Field(ge=0)]


class _ApiModel(BaseModel):
    """Python names in code, camelCase on the wire. Status is written by us and read by other
    versions of us during a rolling upgrade, so an unknown field from a newer writer is ignored
    rather than fatal."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class PromotePolicySpec(_ApiModel):
    """What the user asks for. Unknown fields are an error: a typo such as `includeNamespaces` would
    otherwise silently widen the migration to nothing, or roll back nothing."""

    model_config = ConfigDict(extra="forbid")

    cluster_name: str = Field(min_length=1)
    included_namespaces: list[str] = Field(default_factory=list)
    excluded_namespaces: list[str] = Field(default_factory=list)
    included_namespace_scoped_resources: list[str] = Field(default_factory=list)
    excluded_namespace_scoped_resources: list[str] = Field(default_factory=list)
    rollback: str | None = None
    allow_wildcard_roles: bool = False
    """Promote a namespace even though one of its ServiceAccounts is bound, by a ClusterRoleBinding, to
    a ClusterRole granting every verb on every resource (cluster-admin or alike). Off, the precheck refuses
    such a namespace: promote would copy that binding into the control plane, i.e. make the account
    cluster-admin there too."""

    @field_validator(
        "included_namespaces",
        "excluded_namespaces",
        "included_namespace_scoped_resources",
        "excluded_namespace_scoped_resources",
        mode="before",
    )
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        """The original Go types are nullable slices, so existing manifests may carry `null`."""
        return [] if value is None else value

    @property
    def rollback_requested(self) -> bool:
        """Only the exact string "true" counts, as in Kosmos: `True`, "yes" or "false" do not."""
        return self.rollback == "true"


class PolicyPhase(StrEnum):
    """Namespaces succeed or fail independently; PartiallyFailed means some completed and some did
    not, which a single Failed would hide."""

    PENDING = "Pending"
    PRECHECKING = "Prechecking"
    FAILED_PRECHECK = "FailedPrecheck"
    RUNNING = "Running"
    COMPLETED = "Completed"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED_ROLLBACK = "FailedRollback"


class NamespacePhase(StrEnum):
    """Compensating is the undo of a half-migrated namespace (after a failed detach or rebuild), kept
    apart from Failed so that a crash mid-undo is resumed as an undo, not retried as a migration."""

    PENDING = "Pending"
    PRECHECKING = "Prechecking"
    BACKING_UP = "BackingUp"
    DETACHING = "Detaching"
    REBUILDING = "Rebuilding"
    VERIFYING = "Verifying"
    COMPLETED = "Completed"
    COMPENSATING = "Compensating"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    FAILED_ROLLBACK = "FailedRollback"


class ItemCounts(_ApiModel):
    backed_up: Count = 0
    detached: Count = 0
    rebuilt: Count = 0
    skipped: Count = 0


class RollbackCounts(_ApiModel):
    """What a rollback did, counted apart from the promote's counts (which keep what the promote did)."""

    pods_unmarked: Count = 0
    owners_recreated: Count = 0
    objects_restored: Count = 0
    objects_deleted: Count = 0
    kept: Count = 0
    """Control-plane objects a migration created that are left because another namespace still uses them."""
    start_time: Rfc3339Time | None = None
    completion_time: Rfc3339Time | None = None


class SkippedItem(_ApiModel):
    """Why an object was left behind, so a user can tell a deliberate skip from a lost object."""

    resource: str
    name: str
    reason: str


class NamespaceStatus(_ApiModel):
    """Namespaces are migrated independently, so each carries its own phase, counts and backup."""

    name: str = Field(min_length=1)
    phase: NamespacePhase = NamespacePhase.PENDING
    step: str | None = None
    counts: ItemCounts = Field(default_factory=ItemCounts)
    totals: ItemCounts | None = None
    """What each step has to do, known once the backup is sealed (backup) or the step starts (detach)."""
    skipped: list[SkippedItem] = Field(default_factory=list)
    backup_location: str | None = None
    backup_sha256: str | None = None
    message: str | None = None
    start_time: Rfc3339Time | None = None
    completion_time: Rfc3339Time | None = None
    duration_seconds: float | None = None
    rollback: RollbackCounts | None = None


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_ApiModel):
    """A standard condition, so that `kubectl wait --for=condition=TYPE` works on a policy."""

    type: str
    status: ConditionStatus
    reason: str | None = None
    message: str | None = None
    last_transition_time: Rfc3339Time | None = None
    observed_generation: int | None = None


class PromotePolicyStatus(_ApiModel):
    phase: PolicyPhase = PolicyPhase.PENDING
    observed_generation: int | None = None
    run_id: str | None = None
    cluster_name: str | None = None
    """The member cluster the run acts on, frozen when it started (the spec may say otherwise since)."""
    conditions: list[Condition] = Field(default_factory=list)
    message: str | None = None
    precheck_errors: list[str] = Field(default_factory=list)
    precheck_warnings: list[str] = Field(default_factory=list)
    namespaces: list[NamespaceStatus] = Field(default_factory=list)
    namespaces_done: Count = 0
    namespaces_total: Count = 0
    start_time: Rfc3339Time | None = None
    completion_time: Rfc3339Time | None = None
    duration_seconds: float | None = None


class PromotePolicy(_ApiModel):
    """A whole object as the API server returns it. `metadata` stays a plain dict because only the
    API server defines it and we merely pass it through (name, generation, resourceVersion)."""

    api_version: Literal["kosmos.io/v1alpha1"] = "kosmos.io/v1alpha1"
    kind: Literal["PromotePolicy"] = "PromotePolicy"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PromotePolicySpec
    status: PromotePolicyStatus | None = None

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> Self:
        """Accept any mapping (a kopf Body, a kubernetes-client dict), not only a plain dict."""
        return cls.model_validate(dict(obj))

    def to_api(self) -> dict[str, Any]:
        """Unset optionals are left out rather than sent as null, which a merge patch would read as
        "delete this field"."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def spec_problems(error: ValidationError) -> list[str]:
    """One line per problem, naming the field as the user wrote it, with a suggestion for a misspelt one."""
    known = [field.alias or name for name, field in PromotePolicySpec.model_fields.items()]
    problems = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        line = f"spec.{location}: {problem['msg']}"
        if problem["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(problem["loc"][-1]), known, n=1)
            line = f"spec.{location}: unknown field" + (f' (did you mean "{close[0]}"?)' if close else "")
        problems.append(line)
    return problems
