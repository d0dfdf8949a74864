"""A tenant's decisions: ``access`` (the lockbox), ``window`` (maintenance windows), and
``sovereignty evaluate`` (ask the engine)."""

from __future__ import annotations

from typing import Any

import click

from factory.cli.resources import lookup_id
from factory.cli.session import EXIT_REFUSED, OUTPUT_OPTION, Session, emit, pass_session

ACCESS_REQUESTS = "sovereignty/access-requests/"
WINDOWS = "maintenance-windows/"
EVALUATE = "sovereignty/evaluate/"
ACTIONS = (
    "place_asset",
    "process_asset",
    "replicate_asset",
    "transfer_asset",
    "access_site",
    "accept_artifact",
    "egress_telemetry",
)


def _decide(session: Session, collection: str, object_id: str, verb: str, fmt: str) -> None:
    if not object_id.isdigit():
        raise click.BadParameter(f"{object_id!r} is no id", param_hint="ID")
    emit(session.client().post(f"{collection}{object_id}/{verb}/"), fmt)


def _decision(group: click.Group, name: str, collection: str, verb: str, help: str) -> None:
    """``factoryctl <group> <name> ID``: POST the decision ``verb`` on object ID."""

    @group.command(name, help=help)
    @click.argument("object_id", metavar="ID")
    @OUTPUT_OPTION
    @pass_session
    def decide(session: Session, object_id: str, fmt: str) -> None:
        _decide(session, collection, object_id, verb, fmt)


@click.group()
def access() -> None:
    """Approve or deny the provider's requests for access to a site (a tenant-admin's call)."""


@click.group()
def window() -> None:
    """Approve or reject the maintenance windows the provider proposes (tenant-admins)."""


_decision(access, "approve", ACCESS_REQUESTS, "approve", "Approve access request ID.")
_decision(access, "deny", ACCESS_REQUESTS, "reject", "Deny (reject) access request ID.")
_decision(window, "approve", WINDOWS, "approve", "Approve maintenance window ID.")
_decision(window, "reject", WINDOWS, "reject", "Reject maintenance window ID.")


@click.group()
def sovereignty() -> None:
    """Ask the sovereignty engine."""


@sovereignty.command()
@click.argument("action", type=click.Choice(ACTIONS))
@click.option("--site", required=True, help="Where it happens (id or code).")
@click.option("--asset", type=click.IntRange(1), help="The protected asset (its id).")
@click.option("--person", type=click.IntRange(1), help="The provider person acting (user id).")
@click.option("--from-country", default="", help="Where the person acts from (ISO code).")
@click.option("--remote", is_flag=True, help="The person acts remotely.")
@click.option("--destination", help="Telemetry's destination site (id or code).")
@click.option("--telemetry-category", default="", help="Which telemetry leaves.")
@click.option("--artifact-origin", default="", help="Where an artifact comes from.")
@click.option("--artifact-signed", is_flag=True, help="The artifact is signed.")
@OUTPUT_OPTION
@pass_session
def evaluate(
    session: Session,
    action: str,
    site: str,
    asset: int | None,
    person: int | None,
    from_country: str,
    remote: bool,
    destination: str | None,
    telemetry_category: str,
    artifact_origin: str,
    artifact_signed: bool,
    fmt: str,
) -> None:
    """Would ACTION be allowed at a site? Prints the answer, the deciding rules and a sentence
    for each; exits 0 if allowed, 1 if denied. The question is recorded in the tenant's
    access-transparency log."""
    client = session.client()
    body: dict[str, Any] = {
        "action": action,
        "site": lookup_id(client, "sites/", "code", site, "site"),
        "from_country": from_country.upper(),
        "remote": remote,
        "telemetry_category": telemetry_category,
        "artifact_origin": artifact_origin,
        "artifact_signed": artifact_signed,
    }
    if asset:
        body["asset"] = asset
    if person:
        body["person"] = person
    if destination:
        body["destination"] = lookup_id(client, "sites/", "code", destination, "destination")
    answer = client.post(EVALUATE, body)
    if fmt != "table":
        emit(answer, fmt)
    else:
        click.echo("allowed" if answer.get("allowed") else "denied")
        if answer.get("rule_ids"):
            click.echo(f"  rules: {', '.join(map(str, answer['rule_ids']))}")
        for reason in answer.get("reasons", []):
            click.echo(f"  - {reason}")
    if not answer.get("allowed"):
        raise click.exceptions.Exit(EXIT_REFUSED)
