"""The workflow kinds and their steps."""

from __future__ import annotations

from functools import cache


@cache
def _registry() -> dict:
    from provisioning.workflows.deploy import DEPLOY
    from provisioning.workflows.maintain import MAINTAIN
    from provisioning.workflows.upgrade import UPGRADE

    return {d.kind: d for d in (DEPLOY, UPGRADE, MAINTAIN)}


def definition_for(kind: str):
    return _registry()[kind]
