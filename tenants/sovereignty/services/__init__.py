"""Sovereignty enforcement points: the functions placement, workflows and telemetry call.

One module per concern; this package re-exports them so callers import from one place.
"""

from __future__ import annotations

from tenants.sovereignty.services.access import (
    approved_access,
    check_site_access,
    decide_access,
    request_access,
)
from tenants.sovereignty.services.artifacts import check_artifact
from tenants.sovereignty.services.assets import (
    KeyStoreFacts,
    bases_on_record,
    check_asset_at_site,
    check_workload,
    key_store_facts,
    save_asset,
)
from tenants.sovereignty.services.decisions import (
    DecisionContext,
    Fingerprint,
    SiteLike,
    SovereigntyDenied,
    Subject,
    active_policies,
    as_rule,
    asset_facts,
    decide,
    decision_context,
    decision_context_orm,
    jurisdictions,
    person_facts,
    site_facts,
)
from tenants.sovereignty.services.rules import RuleRejected, activate_rule, retire_rule, what_if
from tenants.sovereignty.services.telemetry import allowed_telemetry

__all__ = [
    "DecisionContext",
    "Fingerprint",
    "KeyStoreFacts",
    "RuleRejected",
    "SiteLike",
    "SovereigntyDenied",
    "Subject",
    "activate_rule",
    "active_policies",
    "allowed_telemetry",
    "approved_access",
    "as_rule",
    "asset_facts",
    "bases_on_record",
    "check_artifact",
    "check_asset_at_site",
    "check_site_access",
    "check_workload",
    "decide",
    "decide_access",
    "decision_context",
    "decision_context_orm",
    "jurisdictions",
    "key_store_facts",
    "person_facts",
    "request_access",
    "retire_rule",
    "save_asset",
    "site_facts",
    "what_if",
]
