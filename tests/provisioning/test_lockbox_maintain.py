"""The lockbox at work (issue 14 item 3, 5): a maintain workflow's dispatch finds the grant that
covers the technician, and the repair step re-checks it: a revoked grant stops the work there until
a new dispatch under a valid grant."""

import pytest
from django.utils import timezone

from provisioning import services as provisioning
from provisioning.models import Step
from tenants.sovereignty import services
from tenants.sovereignty.models import AccessUse, DecisionRecord, SovereigntyRule
from tests.support.fleet import CTX
from tests.support.harness import drive
from tests.support.workflows import put_in_service
from tests.tenants.sovereignty.test_lockbox import REQUESTS, file_request

pytestmark = pytest.mark.django_db


def test_revoke_stops_an_open_dispatch_at_the_repair(fleet, releases, agent, hw):
    rule = SovereigntyRule.objects.create(
        tenant=fleet.alpha, name="lockbox", kind="customer_approval", params={}
    )
    services.activate_rule(rule, CTX)
    access = file_request(fleet)
    fleet.client("alpha_admin").post(f"{REQUESTS}{access['id']}/approve/")
    server = put_in_service(fleet.servers["alpha"])
    _, workflow = provisioning.report_fault(server, "HBM ECC storm on chip 9", CTX)
    workflow = drive(workflow, agent, hw, rounds=4)
    tech = fleet.people["technician"]
    provisioning.provide_input(
        workflow, "dispatch", None, {"technician": tech.pk, "from_country": "DE"}, CTX
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    dispatch = Step.objects.get(workflow=workflow, name="dispatch")
    assert dispatch.state == "succeeded", dispatch.output
    assert dispatch.output["access_request"] == access["id"]  # it found the covering grant

    repair = Step.objects.get(workflow=workflow, name="repair")
    assert repair.state == "waiting" and repair.next_check_at > timezone.now()  # the next poll
    revoked = fleet.client("alpha_admin").post(f"{REQUESTS}{access['id']}/revoke/")
    assert revoked.status_code == 200
    repair.refresh_from_db()
    assert repair.next_check_at <= timezone.now()  # the revoke wakes it: re-checked at once
    workflow = drive(workflow, agent, hw, rounds=1)
    repair.refresh_from_db()
    assert f"#{access['id']}" in repair.output["access_ended"]
    # The technician's record of the work does not get it through either.
    provisioning.record_part_replacement(
        workflow, server, CTX, part="HBM stack 9", rma_number="RMA-1"
    )
    workflow = drive(workflow, agent, hw, rounds=3)
    repair.refresh_from_db()
    assert repair.state == "waiting" and "parts" not in repair.output
    stopped = AccessUse.objects.filter(request_id=access["id"], workflow_id=workflow.pk)
    assert stopped.filter(step="repair", allowed=False).exists()
    assert DecisionRecord.objects.filter(
        tenant_id=fleet.alpha.pk, action="access_site", allowed=False
    ).exists()

    # A new grant and a new dispatch, handed to the repair step, let the work finish.
    again = file_request(fleet)
    fleet.client("alpha_admin").post(f"{REQUESTS}{again['id']}/approve/")
    provisioning.provide_input(
        workflow, "repair", None, {"technician": tech.pk, "from_country": "DE"}, CTX
    )
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    assert AccessUse.objects.filter(request_id=again["id"], allowed=True).count() >= 2
    shown = fleet.client("alpha_viewer").get(f"{REQUESTS}{access['id']}/").json()
    uses = [(u["step"], u["allowed"]) for u in shown["uses"]]  # newest first
    assert uses[0] == ("repair", False) and uses[-1] == ("dispatch", True)
    assert set(uses) == {("repair", False), ("repair", True), ("dispatch", True)}
