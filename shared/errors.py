"""The domain's own errors: what a step could not do, as a type callers can branch on and a message a
person can act on. API failures are `shared.kube.errors`, backup integrity `shared.backup.errors`."""

from __future__ import annotations


class PromoteError(Exception):
    """A step of a migration could not do its work; the message says what and what to do about it."""


class NotSealed(PromoteError):
    """A step that changes a cluster found no sealed backup to work from: it changes nothing."""


class PlanMismatch(PromoteError):
    """The recorded plan and the backup it was made from disagree, or the plan is missing: neither can be
    trusted, and nothing is done from them."""


class SourceGone(PromoteError):
    """What was being migrated disappeared from the member during the backup."""


class NotSettled(PromoteError):
    """A workload is rolling out: promoted now, the control plane would carry the rollout on with pods it
    cannot place. Nothing is changed; it can be promoted once the rollout has finished."""


class ChangedSinceBackup(PromoteError):
    """An object detach was to delete changed in the member after the backup: the control plane would get
    a stale copy, and pods made meanwhile would be left behind. It is left as it is."""


class InvalidSelection(PromoteError, ValueError):
    """The policy's type filters name types the member does not serve, or none at all."""


class NotInTime(PromoteError, TimeoutError):
    """A cluster did not reach a state a step waits for (a CRD Established, a namespace gone) in time."""
