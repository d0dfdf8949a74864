"""What a person does about a fault: acknowledge it with a note, silence it for a time, or
resolve it. Each is audited (the note is in the AuditEvent's ``after``) in the transaction that
makes it; resolving goes through ``faults._clear``, like the rules' own clearing, so its
``fault.resolved`` event and any isolation lift happen exactly as there."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from factory.telemetry import faults
from factory.telemetry.models import Fault
from tenants.errors import Conflict, Invalid, required_text
from tenants.services import audit
from tenants.services.changes import ChangeContext

#: The longest a fault may be silenced: past it, it needs attention again.
MAX_SILENCE = dt.timedelta(days=7)


def _locked_open(fault: Fault) -> Fault:
    # Only the fault's row: its server is an outer join (a site's fault has none), which
    # PostgreSQL will not lock.
    locked = (
        Fault.objects.select_for_update(of=("self",))
        .select_related("site", "ultraserver")
        .get(pk=fault.pk)
    )
    if locked.cleared_at is not None:
        raise Conflict("the fault is already resolved", code="fault_resolved", field="cleared_at")
    return locked


def acknowledge(fault: Fault, note: str, ctx: ChangeContext) -> Fault:
    """Someone has seen it and says what they will do. Acknowledging again replaces the note."""
    note = required_text(note, "note")
    with transaction.atomic():
        fault = _locked_open(fault)
        before = audit.snapshot(fault)
        fault.acknowledged_at = timezone.now()
        fault.acknowledged_by = ctx.actor.username
        fault.acknowledge_note = note
        fault.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledge_note"])
        audit.record_change(ctx, fault, before)
    return fault


def silence(fault: Fault, until: dt.datetime, note: str, ctx: ChangeContext) -> Fault:
    """Out of the attention list (and badge) until ``until``, at most ``MAX_SILENCE`` ahead.
    It stays open, and a silenced critical fault still does what its rule says."""
    note = required_text(note, "note")
    now = timezone.now()
    if until <= now:
        raise Invalid("must be in the future", code="in_past", field="until")
    if until > now + MAX_SILENCE:
        raise Invalid(f"at most {MAX_SILENCE.days} days ahead", code="too_long", field="until")
    with transaction.atomic():
        fault = _locked_open(fault)
        before = audit.snapshot(fault)
        fault.silenced_until, fault.silenced_by, fault.silence_note = (
            until,
            ctx.actor.username,
            note,
        )
        fault.save(update_fields=["silenced_until", "silenced_by", "silence_note"])
        audit.record_change(ctx, fault, before)
    return fault


def resolve(fault: Fault, note: str, ctx: ChangeContext) -> Fault:
    """A person closes it (the repair is done, or it was not real). A server's maintenance flag
    is not lifted here: that is the maintain workflow's (or the server's own) business."""
    note = required_text(note, "note")
    with transaction.atomic():
        fault = _locked_open(fault)
        before = audit.snapshot(fault)
        Fault.objects.filter(pk=fault.pk).update(cleared_by=ctx.actor.username)
        faults._clear(
            Fault.objects.filter(pk=fault.pk), f"resolved by {ctx.actor.username}: {note}"
        )
        fault.refresh_from_db()
        audit.record_change(ctx, fault, before)
    return fault
