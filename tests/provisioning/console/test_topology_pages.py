"""The console's topology, reservations and unit pages (issue 16): with Django's test client
(render, scoping, node-name hiding, query counts that do not grow with the site) and in a real
browser (Playwright driving Debian's Chromium; screenshots in test-artifacts/console/).

Data is made with the ORM: a two-spine fabric, units with a leader and an explanation,
reservations in every state."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory.catalog.models import UltraServerModel
from factory.inventory.models import Chip, NetworkNode, Site, UltraServer
from provisioning.console.topology import PALETTE, hashed_node_id, unit_colour
from provisioning.placement.models import (
    CapacityReservation,
    UnitMember,
    UnitReplacement,
    WorkloadUnit,
)
from tests.support.browser import ARTIFACTS, chromium

MODEL = "trn3-ultraserver"


# --- data -------------------------------------------------------------------------------------


def build_fabric(site: Site, *, spines: int = 2, leaves: int = 2, per_leaf: int = 4, outside=1):
    """``spines`` × ``leaves`` leaves, ``per_leaf`` in-service servers under each, and
    ``outside`` servers under no switch; bulk-made (a big site is thousands)."""
    model = UltraServerModel.objects.get(slug=MODEL)
    rack = site.racks.order_by("name").first()
    tops = NetworkNode.objects.bulk_create(
        NetworkNode(site=site, name=f"{site.code}-SPINE-{s}", layer=1) for s in range(1, spines + 1)
    )
    leafs = NetworkNode.objects.bulk_create(
        NetworkNode(site=site, name=f"{site.code}-LEAF-{s}{x:02d}", layer=2, parent=top)
        for s, top in enumerate(tops, start=1)
        for x in range(1, leaves + 1)
    )
    servers = []
    n = 0
    for leaf in leafs:
        for _ in range(per_leaf):
            n += 1
            servers.append(_server(site, model, rack, n, leaf))
    for _ in range(outside):
        n += 1
        servers.append(_server(site, model, rack, n, None))
    made = UltraServer.objects.bulk_create(servers, batch_size=2000)
    by_leaf: dict[int | None, list[UltraServer]] = {}
    for server in made:
        by_leaf.setdefault(server.network_node_id, []).append(server)
    return {"spines": tops, "leaves": leafs, "servers": made, "by_leaf": by_leaf, "rack": rack}


def _server(site, model, rack, n, leaf):
    return UltraServer(
        serial=f"{site.code}-F-{n:05d}",
        model=model,
        rack=rack,
        position=1 + (n % 40),
        tenant=site.tenant,
        lifecycle_state="in-service",
        network_node=leaf,
    )


def explanation(chosen, leaf, excluded_serial):
    return {
        "chosen": [
            {"serial": s.serial, "node": leaf.name, "why": f"under {leaf.name}, nearest"}
            for s in chosen
        ],
        "lowest_common_node": leaf.name,
        "mean_hops": 2.0,
        "max_hops": 2,
        "excluded": {
            "by_reason": {"unhealthy: 1 chip failed": 1, "held by workflow #12": 3},
            "servers": {excluded_serial: "unhealthy: 1 chip failed"},
            "left_out": 3,
        },
        "considered": {"candidates": 17, "usable": 13},
    }


def make_unit(site, members, name, *, reservation=None, explained=True):
    leaf = NetworkNode.objects.get(pk=members[0].network_node_id)
    unit = WorkloadUnit.objects.create(
        tenant=site.tenant,
        site=site,
        reservation=reservation,
        name=name,
        size=len(members),
        explanation=explanation(members, leaf, "ELSEWHERE-1") if explained else {},
    )
    UnitMember.objects.bulk_create(
        UnitMember(unit=unit, ultraserver=s, role="leader" if i == 0 else "follower")
        for i, s in enumerate(members)
    )
    return unit


def reservation(site, state, *, start_days, days, reason="", count=4, name=""):
    now = timezone.now()
    return CapacityReservation.objects.create(
        tenant=site.tenant,
        site=site,
        model=UltraServerModel.objects.get(slug=MODEL),
        name=name,
        count=count,
        starts_at=now + dt.timedelta(days=start_days),
        ends_at=now + dt.timedelta(days=start_days + days),
        constraint="max_hops",
        max_hops=4,
        state=state,
        state_reason=reason,
    )


@pytest.fixture
def fabric(fleet):
    site = fleet.sites["alpha"]
    built = build_fabric(site)
    leaf_a, leaf_b = built["leaves"][0], built["leaves"][1]  # both under SPINE-1
    a, b = built["by_leaf"][leaf_a.pk], built["by_leaf"][leaf_b.pk]
    held = reservation(site, "active", start_days=-1, days=7, name="llama-serving")
    # unit "rufus": leader and two followers under leaf A, one follower under leaf B (4 hops)
    rufus = make_unit(site, [a[0], a[1], a[2], b[0]], "rufus", reservation=held)
    ember = make_unit(site, [b[1], b[2]], "ember")
    # health: a failed chip in a rufus follower, ember's follower in maintenance, one unreachable
    Chip.objects.create(ultraserver=a[1], index=0, serial="CHIP-A1-0", health="failed")
    UltraServer.objects.filter(pk=b[2].pk).update(in_maintenance=True)
    UltraServer.objects.filter(pk=b[3].pk).update(unreachable_since=timezone.now())
    failed = reservation(
        site,
        "failed",
        start_days=2,
        days=3,
        name="too-big",
        count=64,
        reason="only 12 usable UltraServers under any leaf; 64 asked (same_node)",
    )
    scheduled = reservation(site, "scheduled", start_days=10, days=5, name="next-quarter")
    reservation(fleet.sites["beta"], "active", start_days=-2, days=4, name="beta-only")
    return {
        "fleet": fleet,
        "site": site,
        **built,
        "a": a,
        "b": b,
        "rufus": rufus,
        "ember": ember,
        "failed": failed,
        "scheduled": scheduled,
        "held": held,
    }


def login(client, fleet, who):
    client.force_login(fleet.people[who])
    return client


def cell(html: str, serial: str) -> str:
    found = re.search(rf'<a class="c[^"]*"[^>]*data-serial="{re.escape(serial)}">[^<]*</a>', html)
    assert found, serial
    return found.group(0)


# --- topology ---------------------------------------------------------------------------------


def test_topology_shows_the_fabric_units_coloured_and_health(client, fabric):
    login(client, fabric["fleet"], "provider_admin")
    site, rufus, ember = fabric["site"], fabric["rufus"], fabric["ember"]
    response = client.get(f"/console/sites/{site.pk}/topology/")
    assert response.status_code == 200
    html = response.content.decode()
    for node in fabric["spines"] + fabric["leaves"]:
        assert node.name in html  # a provider sees the node names
    legend = html[html.index('id="unit-legend"') : html.index('id="health-legend"')]
    assert "rufus" in legend and "ember" in legend and f"/console/units/{rufus.pk}/" in legend
    a, b = fabric["a"], fabric["b"]
    leader = cell(html, a[0].serial)
    assert f" u{unit_colour(rufus.pk)} " in leader and "leader" in leader and "h-ok" in leader
    assert f'href="/console/ultraservers/{a[0].pk}/"' in leader
    failed = cell(html, a[1].serial)
    assert "h-failed" in failed and ">✗<" in failed and "1 chip failed" in failed
    maint = cell(html, b[2].serial)
    assert f" u{unit_colour(ember.pk)} " in maint and "h-maintenance" in maint and ">⚠<" in maint
    unreachable = cell(html, b[3].serial)
    assert "free" in unreachable and "h-unreachable" in unreachable and ">?<" in unreachable
    outside = html[html.index('id="outside"') :]
    (lonely,) = fabric["by_leaf"][None]
    assert lonely.serial in outside and "Outside the fabric" in outside
    # the tree: spine then its leaves, leaf rows indented one level
    assert html.index(fabric["spines"][0].name) < html.index(fabric["leaves"][0].name)
    assert html.count('class="fnode"') == len(fabric["spines"]) + len(fabric["leaves"])
    # the site page links here
    assert (
        f"/console/sites/{site.pk}/topology/"
        in client.get(f"/console/sites/{site.pk}/").content.decode()
    )


def test_a_tenant_sees_its_fabric_by_hashes_only_and_not_other_tenants(client, fabric):
    fleet, site = fabric["fleet"], fabric["site"]
    login(client, fleet, "alpha_viewer")
    html = client.get(f"/console/sites/{site.pk}/topology/").content.decode()
    assert "SPINE" not in html and "LEAF" not in html
    spine = fabric["spines"][0]
    assert hashed_node_id(fleet.alpha.pk, spine.pk) in html
    assert hashed_node_id(fleet.alpha.pk, spine.pk) != hashed_node_id(fleet.beta.pk, spine.pk)
    assert "rufus" in html
    unit = client.get(f"/console/units/{fabric['rufus'].pk}/").content.decode()
    assert "SPINE" not in unit and "LEAF" not in unit  # nor in the solver's explanation
    assert hashed_node_id(fleet.alpha.pk, fabric["leaves"][0].pk) in unit
    assert "The stored explanation (JSON)" not in unit

    client.logout()
    login(client, fleet, "beta_admin")
    assert client.get(f"/console/sites/{site.pk}/topology/").status_code == 404
    assert client.get(f"/console/sites/{site.pk}/reservations/").status_code == 404
    assert client.get(f"/console/units/{fabric['rufus'].pk}/").status_code == 404
    units = client.get("/console/units/").content.decode()
    assert "rufus" not in units and "ember" not in units
    timeline = client.get("/console/reservations/").content.decode()
    assert "beta-only" in timeline and "too-big" not in timeline


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_the_topology_page_takes_the_same_queries_for_a_bigger_site(client, fabric):
    login(client, fabric["fleet"], "provider_admin")
    site = fabric["site"]
    url = f"/console/sites/{site.pk}/topology/"
    small = _queries(client, url)
    # ten times the servers, more switches, more units, more failed chips
    more = NetworkNode.objects.create(site=site, name=f"{site.code}-SPINE-9", layer=1)
    leaves = [
        NetworkNode.objects.create(site=site, name=f"{site.code}-LEAF-9{i}", layer=2, parent=more)
        for i in range(4)
    ]
    model = UltraServerModel.objects.get(slug=MODEL)
    extra = UltraServer.objects.bulk_create(
        _server(site, model, fabric["rack"], 1000 + i, leaves[i % 4]) for i in range(160)
    )
    for k in range(10):
        make_unit(site, extra[k * 8 : k * 8 + 8], f"unit-{k}")
    Chip.objects.bulk_create(
        Chip(ultraserver=s, index=0, serial=f"CHIP-X-{s.pk}", health="failed") for s in extra[::7]
    )
    big = _queries(client, url)
    assert big == small, (small, big)
    html = client.get(url).content.decode()
    assert html.count('<a class="c') == len(fabric["servers"]) + 160 + 1  # + the fleet's own


@pytest.mark.slow
def test_a_seven_thousand_server_site_renders_compactly(client, fleet):
    site = fleet.sites["alpha"]
    build_fabric(site, spines=4, leaves=35, per_leaf=50, outside=0)  # 7,000
    login(client, fleet, "provider_admin")
    url = f"/console/sites/{site.pk}/topology/"
    with CaptureQueriesContext(connection) as queries:
        started = time.monotonic()
        response = client.get(url)
        took = time.monotonic() - started
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<a class="c') == 7000 + 1  # fleet's own server is outside the fabric
    assert len(queries) <= 16, [q["sql"][:80] for q in queries]
    assert len(html) < 2_500_000, len(html)  # one small element per server
    assert took < 20, took


# --- reservations -----------------------------------------------------------------------------


def test_reservations_on_a_timeline(client, fabric):
    login(client, fabric["fleet"], "alpha_admin")
    site = fabric["site"]
    html = client.get("/console/reservations/").content.decode()
    failed, scheduled, held = fabric["failed"], fabric["scheduled"], fabric["held"]
    row = html[html.index(f'id="cr-{failed.pk}"') : html.index(f'id="cr-{scheduled.pk}"')]
    assert "Failed" in row and "only 12 usable UltraServers under any leaf" in row
    assert "64 × " in row and "at most 4 hops apart" in row and 'class="tl-bar failed"' in row
    assert 'class="tl-bar active"' in html and 'class="tl-bar scheduled"' in html
    assert html.count('class="today"') >= 3  # now marked on every row and the axis
    # bars run in time order: the one that started yesterday is left of the future one
    left = {
        int(pk): float(x)
        for pk, x in re.findall(
            r'id="cr-(\d+)".*?class="tl-bar \w+" style="left: ([\d.]+)%', html, re.S
        )
    }
    assert left[held.pk] < left[failed.pk] < left[scheduled.pk]
    per_site = client.get(f"/console/sites/{site.pk}/reservations/").content.decode()
    assert "too-big" in per_site and "beta-only" not in per_site
    unit = client.get(f"/console/units/{fabric['rufus'].pk}/").content.decode()
    assert f"/console/sites/{site.pk}/reservations/#cr-{held.pk}" in unit


def test_reservation_timeline_queries_do_not_grow(client, fabric):
    login(client, fabric["fleet"], "provider_admin")
    site = fabric["site"]
    small = _queries(client, "/console/reservations/")
    for i in range(30):
        reservation(site, "expired", start_days=-40 + i, days=1, name=f"old-{i}")
    assert _queries(client, "/console/reservations/") == small


# --- units ------------------------------------------------------------------------------------


def test_the_unit_page_shows_members_leader_hops_and_explanation(client, fabric):
    login(client, fabric["fleet"], "provider_admin")
    rufus, a, b = fabric["rufus"], fabric["a"], fabric["b"]
    leaf_a = fabric["leaves"][0]
    html = client.get(f"/console/units/{rufus.pk}/").content.decode()
    members = html[html.index('id="members"') : html.index('id="explanation"')]

    def member_row(serial):
        return re.search(rf'data-serial="{serial}">.*?</tr>', members, re.S).group(0)

    leader = member_row(a[0].serial)
    assert "★ leader" in leader and leaf_a.name in leader and "—" in leader
    assert re.search(r"<td>2</td>\s*</tr>", member_row(a[1].serial))  # same leaf
    assert re.search(r"<td>4</td>\s*</tr>", member_row(b[0].serial))  # other leaf, same spine
    assert fabric["rack"].name in leader
    explained = html[html.index('id="explanation"') :]
    assert all(s.serial in explained for s in a[:3])
    assert "unhealthy: 1 chip failed" in explained and "held by workflow #12" in explained
    assert "ELSEWHERE-1" in explained and "3 more not listed" in explained
    assert re.search(r'id="exp-mean">2.0<', explained) and re.search(r'id="exp-max">2<', explained)
    assert re.search(rf'id="exp-lcn">{leaf_a.name}<', explained)
    assert "Candidates" in explained and "17" in explained
    assert "mean 3.00 hops · max 4 hops" in html  # measured now from the fabric
    assert fabric["held"].name in html  # its reservation
    assert PALETTE[unit_colour(rufus.pk)]  # the same colour class as on the topology page
    assert f"swatch u{unit_colour(rufus.pk)}" in html


def test_a_degraded_unit_shows_its_reason_and_replacement(client, fabric):
    login(client, fabric["fleet"], "alpha_operator")
    rufus, a = fabric["rufus"], fabric["a"]
    failed = UnitMember.objects.get(unit=rufus, ultraserver=a[1])
    failed.state, failed.state_reason = "failed", "chip 0 failed"
    failed.save()
    rufus.state, rufus.state_reason = "degraded", f"member {a[1].serial} failed"
    rufus.save()
    UnitReplacement.objects.create(
        unit=rufus,
        failed_member=failed,
        replacement=a[3],
        explanation={"chosen": [{"serial": a[3].serial, "node": fabric["leaves"][0].name}]},
    )
    html = client.get(f"/console/units/{rufus.pk}/").content.decode()
    assert 'id="unit-state">Degraded' in html and f"member {a[1].serial} failed" in html
    replacements = html[html.index('id="replacements"') :]
    assert (
        a[1].serial in replacements and a[3].serial in replacements and "Proposed" in replacements
    )
    assert "LEAF" not in replacements  # an operator of the tenant: hashes only
    units = client.get("/console/units/").content.decode()
    assert "rufus" in units and "✗ 1 failed" in units and "3 of 4" not in units


def test_an_explanation_in_the_plain_form_and_none_at_all(client, fabric):
    login(client, fabric["fleet"], "provider_admin")
    ember = fabric["ember"]
    ember.explanation = {"excluded": {"X-1": "held by workflow #3", "X-2": "held by workflow #3"}}
    ember.save()
    html = client.get(f"/console/units/{ember.pk}/").content.decode()
    assert re.search(r"<td>held by workflow #3</td><td>2</td>", html)
    bare = make_unit(fabric["site"], [fabric["a"][3]], "bare", explained=False)
    assert "left no explanation" in client.get(f"/console/units/{bare.pk}/").content.decode()
    assert client.get("/console/units/999999/").status_code == 404


def test_unit_page_queries_do_not_grow_with_its_size(client, fabric):
    login(client, fabric["fleet"], "provider_admin")
    site = fabric["site"]
    small = make_unit(site, fabric["b"][3:4], "one")
    leaf = fabric["leaves"][3]
    model = UltraServerModel.objects.get(slug=MODEL)
    servers = UltraServer.objects.bulk_create(
        _server(site, model, fabric["rack"], 5000 + i, leaf) for i in range(16)
    )
    big = make_unit(site, servers, "sixteen")
    assert _queries(client, f"/console/units/{small.pk}/") == _queries(
        client, f"/console/units/{big.pk}/"
    )
    assert _queries(client, "/console/units/") > 0


# --- in a browser -----------------------------------------------------------------------------


@pytest.fixture
def browser(live_server):
    """Per test, after the database is set up (tests.support.browser)."""
    with chromium() as browser:
        yield browser


def _tab(browser, base: str, username: str):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/console/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/$"))
    return context, page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"topology-{name}.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_pages_in_a_browser(fabric, browser, live_server):
    site, rufus, a, b = fabric["site"], fabric["rufus"], fabric["a"], fabric["b"]
    context, page = _tab(browser, live_server.url, "padmin")
    # site → topology, by its link
    page.goto(f"{live_server.url}/console/sites/{site.pk}/")
    page.get_by_role("link", name="Network topology").click()
    page.wait_for_url(re.compile(rf".*/console/sites/{site.pk}/topology/$"))
    leader = page.locator(f'a.c[data-serial="{a[0].serial}"]')
    assert "leader" in leader.get_attribute("class")
    colour = leader.evaluate("e => getComputedStyle(e).backgroundColor")
    swatch = page.locator("#unit-legend li", has_text="rufus").locator(".swatch")
    swatch_colour = swatch.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == swatch_colour == _rgb(PALETTE[unit_colour(rufus.pk)])
    failed = page.locator(f'a.c[data-serial="{a[1].serial}"]')
    assert failed.inner_text() == "✗" and "chip failed" in failed.get_attribute("title")
    assert page.locator(f'a.c[data-serial="{b[3].serial}"]').inner_text() == "?"
    _shot(page, "site")
    # topology → unit, by the legend
    page.locator("#unit-legend").get_by_role("link", name="rufus").click()
    page.wait_for_url(re.compile(rf".*/console/units/{rufus.pk}/$"))
    row = page.locator(f'#members tr[data-serial="{a[0].serial}"]')
    assert "★ leader" in row.inner_text()
    assert "2.0" in page.locator("#exp-mean").inner_text()
    assert "unhealthy: 1 chip failed" in page.locator("#excluded-reasons").inner_text()
    _shot(page, "unit")
    page.locator("header nav").get_by_role("link", name="Units", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/units/$"))
    assert page.locator("#units tbody tr").count() == 2
    _shot(page, "units")
    page.locator("header nav").get_by_role("link", name="Reservations", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/reservations/$"))
    failed_row = page.locator(f"#cr-{fabric['failed'].pk}")
    assert "only 12 usable UltraServers" in failed_row.inner_text()
    bar = failed_row.locator(".tl-bar").bounding_box()
    now = failed_row.locator(".today").bounding_box()
    assert bar["x"] > now["x"]  # it starts in two days: right of today's line
    _shot(page, "reservations")
    context.close()

    # a tenant's viewer: the same fabric by hashes
    context, page = _tab(browser, live_server.url, "alpha-viewer")
    page.goto(f"{live_server.url}/console/sites/{site.pk}/topology/")
    text = page.locator("#fabric").inner_text()
    assert "SPINE" not in text and "nn-" in text
    _shot(page, "tenant")
    context.close()


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_a_real_solver_explanation_is_shown_and_hidden_from_tenants(client, fabric):
    """The explanation as the placement solver stores it (node keys as the candidates carry
    them: the tenant's hashed ids), not a mock."""
    from provisioning.placement.selectors import network_paths
    from provisioning.placement.solver import Candidate, Request, solve

    site, fleet = fabric["site"], fabric["fleet"]
    paths = network_paths(site.pk)  # leaf → (spine, leaf), keyed as in production
    spare = fabric["leaves"][2]  # under SPINE-2: no unit there yet
    candidates = [
        Candidate(
            id=s.pk,
            serial=s.serial,
            path=paths[s.network_node_id],
            rack=fabric["rack"].name,
            problems=("unhealthy: 1 chip failed",) if i == 0 else (),
        )
        for i, s in enumerate(fabric["by_leaf"][spare.pk])
    ]
    placement = solve(candidates, Request(size=3))
    servers = UltraServer.objects.in_bulk(placement.members)
    unit = make_unit(site, [servers[pk] for pk in placement.members], "solved", explained=False)
    unit.explanation = placement.explanation
    unit.save()

    login(client, fleet, "provider_admin")
    html = client.get(f"/console/units/{unit.pk}/").content.decode()
    explained = html[html.index('id="explanation"') :]
    assert re.search(rf'id="exp-lcn">{spare.name}<', explained)  # the key shown as its name
    assert re.search(r'id="exp-mean">2.0<', explained)
    excluded = fabric["by_leaf"][spare.pk][0]
    assert excluded.serial in explained and "unhealthy" in explained
    assert all(servers[pk].serial in explained for pk in placement.members)
    leader = re.search(rf'data-serial="{servers[placement.leader].serial}">.*?</tr>', html, re.S)
    assert leader and "★ leader" in leader.group(0)

    client.logout()
    login(client, fleet, "alpha_admin")
    html = client.get(f"/console/units/{unit.pk}/").content.decode()
    assert spare.name not in html and "LEAF" not in html and "SPINE" not in html
    assert hashed_node_id(fleet.alpha.pk, spare.pk) in html


def test_a_failed_reservations_reason_names_nodes_as_the_viewer_may_see_them(client, fabric):
    fleet, leaf = fabric["fleet"], fabric["leaves"][1]
    failed = fabric["failed"]
    # As the solver words it: nodes keyed by the tenant's hashed ids (selectors.network_paths).
    key = hashed_node_id(fleet.alpha.pk, leaf.pk)
    failed.state_reason = f"at most 3 usable servers within 2 hops of each other (under {key})"
    failed.save()
    login(client, fleet, "provider_admin")
    html = client.get("/console/reservations/").content.decode()
    assert f"(under {leaf.name})" in html
    client.logout()
    login(client, fleet, "alpha_viewer")
    html = client.get("/console/reservations/").content.decode()
    assert f"(under {hashed_node_id(fleet.alpha.pk, leaf.pk)})" in html
    assert leaf.name not in html and f"(under {leaf.pk})" not in html


def test_a_tenant_sees_the_same_node_ids_in_the_console_as_in_the_api(client, fabric):
    fleet, site = fabric["fleet"], fabric["site"]
    server = fabric["a"][0]
    api = fleet.client("alpha_viewer", scope="read")
    listed = api.get("/api/v1/instance-topology/", {"MaxResults": 100}).json()["Instances"]
    (entry,) = [e for e in listed if e["ultraserver"]["serial"] == server.serial]
    login(client, fleet, "alpha_viewer")
    html = client.get(f"/console/sites/{site.pk}/topology/").content.decode()
    spine, leaf = entry["network_nodes"]
    assert f'<span class="nname">{spine}</span>' in html
    assert f'<span class="nname">{leaf}</span>' in html
    unit = client.get(f"/console/units/{fabric['rufus'].pk}/").content.decode()
    row = re.search(rf'data-serial="{server.serial}">.*?</tr>', unit, re.S)
    assert row and leaf in row.group(0)
