"""The workflow kinds and their steps."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioning.workflows.definition import WorkflowDefinition


@cache
def _registry() -> dict[str, WorkflowDefinition]:
    from provisioning.workflows.deploy import DEPLOY
    from provisioning.workflows.maintain import MAINTAIN
    from provisioning.workflows.upgrade import UPGRADE

    return {d.kind: d for d in (DEPLOY, UPGRADE, MAINTAIN)}


def definition_for(kind: str) -> WorkflowDefinition:
    return _registry()[kind]


def spec_schema() -> dict[str, Any]:
    """The JSON schema of a workflow's ``spec``, whatever its kind (from the declarations)."""
    from provisioning.workflows.params import merged_schema

    return merged_schema({kind: d.spec_params for kind, d in _registry().items()})
