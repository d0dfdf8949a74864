"""The lockbox's rules, pure: what a tenant's policy asks of an access request, whether the
votes cast so far open it, whether the person's location at the time is acceptable, and what a
request's status is at a given moment. No Django: the services, the API, the beat job and the
tests all ask these functions, so a lazy read and the scheduled expiry give the same answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

ANY = "*"
#: Break-glass is short by construction: no policy may grant more than this.
MAX_BREAK_GLASS_MINUTES = 240


class Justification(StrEnum):
    """Why the provider needs access (after Google's Key Access Justifications and Azure
    Customer Lockbox): one code per request, stated by the provider, judged by the policy."""

    CUSTOMER_SUPPORT = "customer_support"  # the customer asked (a ticket)
    PROVIDER_MAINTENANCE = "provider_maintenance"  # planned upkeep of the provider's hardware
    PRODUCTION_ALERT = "production_alert"  # a response to a production alert or fault
    SECURITY_INCIDENT = "security_incident"
    LEGAL_REQUEST = "legal_request"  # a legal or third-party request for access
    SAFETY_HAZARD = "safety_hazard"  # fire, leak, electrical: people and premises at risk


class Scope(StrEnum):
    """What the person may do once in: a grant covers one scope, a use names the one it needs."""

    PHYSICAL_REPAIR = "physical_repair"  # hands on hardware on site
    REMOTE_HANDS = "remote_hands"  # acting on the systems from elsewhere
    FIRMWARE = "firmware"
    READ_DIAGNOSTICS = "read_diagnostics"


class Approval(StrEnum):
    PRE_APPROVED = "pre_approved"
    ONE = "one"  # any one of the tenant's admins
    N_OF_M = "n_of_m"  # N approvals from a named set of M tenant admins
    NEVER = "never"


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # unanswered by its deadline
    REVOKED = "revoked"  # the tenant ended it
    ENDED = "ended"  # its window is over, or the provider closed it

    @property
    def is_final(self) -> bool:
        return self not in (Status.PENDING, Status.APPROVED)


@dataclass(frozen=True)
class Entry:
    """One line of a policy: (justification, scope) → approval. ``*`` matches any."""

    justification: str = ANY
    scope: str = ANY
    approval: Approval = Approval.ONE
    n: int = 1
    approvers: tuple[int, ...] = ()

    @property
    def specificity(self) -> int:
        return (self.justification != ANY) * 2 + (self.scope != ANY)


@dataclass(frozen=True)
class Policy:
    """A tenant's lockbox policy. The defaults are the secure ones: one admin approves, a legal
    request is never let in, no break-glass, the person must be in the site's country."""

    entries: tuple[Entry, ...] = (Entry(Justification.LEGAL_REQUEST, ANY, Approval.NEVER),)
    default: Approval = Approval.ONE
    emergency_codes: frozenset[str] = frozenset()
    break_glass_minutes: int = 60
    answer_within_minutes: int = 24 * 60
    physical_in_site_country: bool = True
    office_countries: frozenset[str] = frozenset()  # empty: any


@dataclass(frozen=True)
class Requirement:
    approval: Approval
    n: int = 1
    approvers: frozenset[int] = field(default_factory=frozenset)

    def may_vote(self, user_id: int, is_tenant_admin: bool) -> bool:
        if not is_tenant_admin:
            return False
        return self.approval != Approval.N_OF_M or user_id in self.approvers


def requirement(policy: Policy, justification: str, scope: str) -> Requirement:
    """The most specific entry that matches (exact pair, then the code, then the scope), else
    the policy's default."""
    matching = [
        e
        for e in policy.entries
        if e.justification in (ANY, justification) and e.scope in (ANY, scope)
    ]
    if not matching:
        return Requirement(policy.default)
    best = max(matching, key=lambda e: e.specificity)
    if best.approval == Approval.N_OF_M:
        return Requirement(best.approval, best.n, frozenset(best.approvers))
    return Requirement(best.approval)


def entry_problems(entry: Entry, tenant_admins: Iterable[int]) -> list[tuple[str, str, str]]:
    """(field, code, message) for an entry that cannot work: unknown codes, N > M, approvers who
    are not the tenant's admins."""
    problems = []
    if entry.justification != ANY and entry.justification not in set(Justification):
        problems.append(
            ("justification", "unknown", f"unknown justification {entry.justification!r}")
        )
    if entry.scope != ANY and entry.scope not in set(Scope):
        problems.append(("scope", "unknown", f"unknown scope {entry.scope!r}"))
    if entry.approval == Approval.N_OF_M:
        admins = set(tenant_admins)
        strangers = sorted(set(entry.approvers) - admins)
        if strangers:
            problems.append(
                ("approvers", "not_tenant_admin", f"not admins of this tenant: {strangers}")
            )
        if len(set(entry.approvers)) < 2:
            problems.append(("approvers", "too_few", "N of M names at least two approvers"))
        if not 1 <= entry.n <= len(set(entry.approvers)):
            problems.append(("n", "out_of_range", "N must be between 1 and the M approvers"))
    return problems


def tally(req: Requirement, votes: Sequence[tuple[int, bool]]) -> Status:
    """Where the votes leave a request: a rejection by anyone entitled to vote rejects it; N
    approvals from distinct eligible approvers (one for ``one``) approve it; else it waits."""
    eligible = [
        (u, yes) for u, yes in votes if req.approval != Approval.N_OF_M or u in req.approvers
    ]
    if any(not yes for _, yes in eligible):
        return Status.REJECTED
    needed = req.n if req.approval == Approval.N_OF_M else 1
    if len({u for u, yes in eligible if yes}) >= needed:
        return Status.APPROVED
    return Status.PENDING


def location_problem(
    policy: Policy, site_country: str, office_country: str, physical_country: str
) -> str | None:
    """Why the person's location breaks the policy, or ``None``. Unknown where the policy needs
    to know fails closed."""
    if policy.physical_in_site_country:
        if not physical_country:
            return "the technician's physical country is not stated"
        if physical_country.upper() != site_country.upper():
            return f"the technician is in {physical_country}, the site is in {site_country}"
    if policy.office_countries:
        if not office_country:
            return "the technician's office country is not stated"
        if office_country.upper() not in policy.office_countries:
            allowed = ", ".join(sorted(policy.office_countries))
            return f"an office in {office_country} is not among {allowed}"
    return None


def effective_status(
    status: str, now: dt.datetime, *, answer_by: dt.datetime | None, ends_at: dt.datetime
) -> Status:
    """The status at ``now``: a pending request past its deadline has expired, an approved one
    past its window has ended. The beat job writes exactly this."""
    current = Status(status)
    if current == Status.PENDING and answer_by is not None and now >= answer_by:
        return Status.EXPIRED
    if current in (Status.PENDING, Status.APPROVED) and now >= ends_at:
        return Status.EXPIRED if current == Status.PENDING else Status.ENDED
    return current


def covers(
    status: str,
    now: dt.datetime,
    *,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    answer_by: dt.datetime | None,
    granted_scope: str,
    scope: str,
) -> bool:
    """A grant covers a use when it is approved at ``now``, ``now`` is inside its window, and
    it is for the scope the use needs."""
    live = effective_status(status, now, answer_by=answer_by, ends_at=ends_at)
    return live == Status.APPROVED and starts_at <= now < ends_at and granted_scope == scope


def break_glass_allowed(policy: Policy, justification: str) -> bool:
    return justification in policy.emergency_codes


def policy_from(data: Mapping) -> Policy:
    """A policy from its stored form (the model's fields, as plain values)."""
    return Policy(
        entries=tuple(
            Entry(
                justification=e.get("justification", ANY),
                scope=e.get("scope", ANY),
                approval=Approval(e.get("approval", Approval.ONE)),
                n=int(e.get("n", 1)),
                approvers=tuple(int(a) for a in e.get("approvers", ())),
            )
            for e in data.get("entries", ())
        ),
        default=Approval(data.get("default_approval", Approval.ONE)),
        emergency_codes=frozenset(data.get("emergency_codes", ())),
        break_glass_minutes=min(int(data.get("break_glass_minutes", 60)), MAX_BREAK_GLASS_MINUTES),
        answer_within_minutes=int(data.get("answer_within_minutes", 24 * 60)),
        physical_in_site_country=bool(data.get("physical_in_site_country", True)),
        office_countries=frozenset(c.upper() for c in data.get("office_countries", ())),
    )
