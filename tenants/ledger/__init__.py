"""The ledger's pure core: canonical form, chain and pack verification (``verify_pack.py``,
which also runs on its own as the auditor's offline verifier). No Django here."""
