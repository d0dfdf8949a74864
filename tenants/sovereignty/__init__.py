"""Sovereignty: what customers say must stay where, and who may touch what.

``core/`` is the pure engine (Cedar + reference evaluator). The rest is the Django adapter: rules,
assets, jurisdiction groups, access requests and the access-transparency log. It never imports
the inventory: callers hand it plain facts (see ``factory/inventory/sovereignty.py``).
"""
