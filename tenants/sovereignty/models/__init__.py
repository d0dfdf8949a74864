"""The sovereignty models, one module per domain."""

from tenants.sovereignty.models.access import (
    AccessApproval,
    AccessRequest,
    AccessRequestStatus,
    AccessScope,
    AccessUse,
    ApprovalNeed,
    Justification,
    LockboxPolicy,
)
from tenants.sovereignty.models.assets import ProtectedAsset, TransferBasis
from tenants.sovereignty.models.decisions import DecisionRecord
from tenants.sovereignty.models.facts import (
    FactChangeNotice,
    FactChangeStatus,
    FactSubject,
    PendingFactChange,
)
from tenants.sovereignty.models.groups import JurisdictionGroup, JurisdictionGroupVersion
from tenants.sovereignty.models.keys import ExternalKeyStore, KeyStoreState
from tenants.sovereignty.models.rules import RuleStatus, SovereigntyRule
from tenants.sovereignty.models.trust import TrustRoot

__all__ = [
    "AccessApproval",
    "AccessRequest",
    "AccessRequestStatus",
    "AccessScope",
    "AccessUse",
    "ApprovalNeed",
    "DecisionRecord",
    "ExternalKeyStore",
    "FactChangeNotice",
    "FactChangeStatus",
    "FactSubject",
    "JurisdictionGroup",
    "JurisdictionGroupVersion",
    "Justification",
    "KeyStoreState",
    "LockboxPolicy",
    "PendingFactChange",
    "ProtectedAsset",
    "RuleStatus",
    "SovereigntyRule",
    "TransferBasis",
    "TrustRoot",
]
