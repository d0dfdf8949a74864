"""Sovereignty evidence: signed checkpoints of the hash-chained logs, verifying them, and the
evidence packs an auditor checks offline (with ``tenants/ledger/verify_pack.py``)."""
