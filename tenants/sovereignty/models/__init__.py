"""The sovereignty models, one module per domain."""

from tenants.sovereignty.models.access import AccessRequest, AccessRequestStatus
from tenants.sovereignty.models.assets import ProtectedAsset, TransferBasis
from tenants.sovereignty.models.decisions import DecisionRecord
from tenants.sovereignty.models.groups import JurisdictionGroup
from tenants.sovereignty.models.rules import RuleStatus, SovereigntyRule

__all__ = [
    "AccessRequest",
    "AccessRequestStatus",
    "DecisionRecord",
    "JurisdictionGroup",
    "ProtectedAsset",
    "RuleStatus",
    "SovereigntyRule",
    "TransferBasis",
]
