"""The sovereignty policy engine's pure core: no Django, no database.

Structured rules (what customers write) compile to Cedar policies; the engine evaluates a request
against facts with cedarpy and fails closed. ``reference`` evaluates the same rules in plain
Python, for differential tests.
"""
