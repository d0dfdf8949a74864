from django.urls import path

from tenants.evidence import api

urlpatterns = [
    path("ledger/verify/", api.LedgerVerifyView.as_view(), name="ledger-verify"),
    path("ledger/evidence/", api.EvidencePackView.as_view(), name="ledger-evidence"),
]
