"""factoryctl's pure parts: columns and cells, key=value typing, SSE parsing, resource names,
error lines, progress summaries. No server, no database."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from factory.cli import events, names, output, progress, sse, values
from factory.cli.workflows import applies_to
from tests.support.purity import imported_modules

ROOT = Path(__file__).resolve().parents[3]

# -- output -----------------------------------------------------------------------------------


def test_default_columns_lead_with_what_identifies_names_and_states_a_row():
    rows = [
        {
            "id": 1,
            "serial": "FRA1-TRN3-0101",
            "model": 1,
            "model_name": "Trn3",
            "rack": 3,
            "rack_name": "FRA1-R01",
            "lifecycle_state": "in-service",
            "firmware_version": "2026.09.1",
            "created_at": "2026-12-01T00:00:00Z",
        }
    ]
    assert output.default_columns(rows) == [
        "id",
        "serial",
        "lifecycle_state",
        "rack_name",
        "model_name",
        "created_at",
    ]


def test_default_columns_of_an_unknown_shape_still_make_a_table():
    rows = [{"alpha": 1, "beta": "x", "nested": {"a": 1}, "gamma": True, "delta": None}]
    assert output.default_columns(rows) == ["alpha", "beta", "gamma", "delta"]
    assert output.default_columns([]) == []
    assert output.default_columns([{"only": {"a": 1}}]) == ["only"]


def test_at_most_max_columns():
    row = {key: 1 for key in output.PREFERRED}
    assert len(output.default_columns([row])) == output.MAX_COLUMNS


def test_cells_are_one_line_and_cut():
    assert output.cell(None) == ""
    assert output.cell(True) == "true"
    assert output.cell(2.5) == "2.5"
    assert output.cell({"a": [1, 2]}) == '{"a":[1,2]}'
    assert output.cell("two\nlines") == "two lines"
    long = output.cell("x" * 100, width=10)
    assert long == "x" * 9 + "…" and len(long) == 10


def test_json_and_yaml_round_trip():
    data = [{"id": 1, "name": "Frankfurt Rechenzentrum", "tags": ["ä", "b"], "none": None}]
    assert json.loads(output.as_json(data)) == data
    assert yaml.safe_load(output.as_yaml(data)) == data
    assert "ä" in output.as_yaml(data)  # readable, not escaped


def test_parse_columns():
    assert output.parse_columns(None) is None
    assert output.parse_columns("id, name,,state") == ["id", "name", "state"]


def test_error_lines_name_each_field():
    lines = output.format_error(
        400,
        "invalid",
        "The request is invalid.",
        [
            {"field": "spec.batch_size", "code": "min_value", "message": "must be at least 1"},
            {"field": None, "code": "invalid", "message": "something else"},
        ],
    )
    assert lines == [
        "400 invalid: The request is invalid.",
        "  spec.batch_size: must be at least 1 [min_value]",
        "  something else",
    ]
    # the same sentence twice says nothing new
    same = [{"field": None, "code": "not_found", "message": "Not found."}]
    assert output.format_error(404, "not_found", "Not found.", same) == [
        "404 not_found: Not found."
    ]


# -- values -----------------------------------------------------------------------------------


def test_pairs_keep_repeats_and_refuse_non_pairs():
    assert values.pairs(["site=FRA1", "site=IAD1", "q=a=b"]) == [
        ("site", "FRA1"),
        ("site", "IAD1"),
        ("q", "a=b"),
    ]
    for bad in ("site", "=x", ""):
        with pytest.raises(values.BadPair):
            values.pairs([bad])


SPEC = {
    "firmware_version": {"type": "string"},
    "batch_size": {"type": "integer"},
    "max_failure_pct": {"type": "number"},
    "rollback": {"type": "boolean"},
    "inputs": {"type": "array", "items": {"type": "integer"}},
}


def test_values_are_typed_as_the_schema_declares():
    typed = values.typed_pairs(
        [
            "firmware_version=2.0",
            "batch_size=3",
            "max_failure_pct=12.5",
            "rollback=no",
            "inputs=4,5",
            "unknown=[1]",
            "other=DE",
        ],
        SPEC,
    )
    assert typed == {
        "firmware_version": "2.0",  # a version, not a float
        "batch_size": 3,
        "max_failure_pct": 12.5,
        "rollback": False,
        "inputs": [4, 5],
        "unknown": [1],
        "other": "DE",
    }


def test_a_value_that_is_not_its_type_goes_as_sent_for_the_service_to_refuse():
    typed = values.typed_pairs(["batch_size=three", "rollback=maybe", "inputs=[1,2]"], SPEC)
    assert typed == {"batch_size": "three", "rollback": "maybe", "inputs": [1, 2]}
    assert values.typed("true", {"type": "integer"}) == "true"  # no bool for a number


def test_schema_properties_follow_refs():
    document = {
        "components": {
            "schemas": {
                "WorkflowCreateRequest": {
                    "properties": {"spec": {"$ref": "#/components/schemas/Spec"}}
                },
                "Spec": {"properties": {"batch_size": {"allOf": [{"$ref": "#/c/s/Int"}]}}},
                "Int": {"type": "integer"},
            }
        }
    }
    props = values.schema_properties(document, "WorkflowCreateRequest", "spec")
    assert props == {"batch_size": {"type": "integer"}}
    assert values.schema_properties(document, "Missing", "spec") == {}
    assert values.schema_properties({}, "WorkflowCreateRequest", "spec") == {}


def test_applies_to_reads_the_kinds_from_a_merged_description():
    text, kinds = applies_to("Per batch. Applies to: deploy; upgrade (default 10); maintain.")
    assert text == "Per batch."
    assert kinds == {"deploy": "", "upgrade": "default 10", "maintain": ""}
    assert applies_to("No kinds.") == ("No kinds.", {})


# -- SSE --------------------------------------------------------------------------------------


def test_sse_frames_comments_and_ids():
    parser = sse.Parser()
    events = parser.feed(
        b': keepalive\n\nid: 7\nevent: fault.opened\ndata: {"id": 7}\n\n'
        b"id: 8\ndata: line one\ndata: line two\n\n"
    )
    assert events == [
        sse.Event('{"id": 7}', "fault.opened", "7"),
        sse.Event("line one\nline two", "message", "8"),
    ]
    assert parser.last_event_id == "8"


def test_sse_lines_split_across_chunks_and_every_line_ending():
    parser = sse.Parser()
    stream = b"id: 1\r\ndata: a\r\n\r\nid: 2\rdata: b\r\rid: 3\ndata: c\n\n"
    got = []
    for i in range(len(stream)):  # one byte at a time: the worst a network does
        got += parser.feed(stream[i : i + 1])
    assert [(e.id, e.data) for e in got] == [("1", "a"), ("2", "b"), ("3", "c")]


def test_sse_id_without_data_moves_the_position_but_dispatches_nothing():
    parser = sse.Parser("5")
    assert parser.feed(b"id: 9\n\n") == []
    assert parser.last_event_id == "9"
    assert parser.feed(b"retry: 2500\n\n") == [] and parser.retry_ms == 2500


def test_sse_half_an_event_dies_with_its_connection():
    parser = sse.Parser()
    assert parser.feed(b"id: 4\ndata: half") == []
    parser.new_connection()
    assert parser.feed(b"id: 5\ndata: whole\n\n") == [sse.Event("whole", "message", "5")]


# -- names ------------------------------------------------------------------------------------

ENDPOINTS = {
    name: f"/api/v1/{name}/"
    for name in (
        "sites",
        "capacity/sites",
        "sovereignty/access-requests",
        "sovereignty/rules",
        "catalog/chip-models",
        "maintenance-windows",
        "sovereignty/transfer-bases",
        "policies",
    )
}


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("sites", "sites"),
        ("site", "sites"),
        ("capacity/sites", "capacity/sites"),
        ("access-requests", "sovereignty/access-requests"),
        ("access_request", "sovereignty/access-requests"),
        ("rule", "sovereignty/rules"),
        ("chip-model", "catalog/chip-models"),
        ("maintenance-window", "maintenance-windows"),
        ("transfer-basis", "sovereignty/transfer-bases"),
        ("policy", "policies"),
        ("/sites/", "sites"),
    ],
)
def test_resource_names(typed, meant):
    assert names.resolve(typed, ENDPOINTS) == meant


def test_unknown_and_ambiguous_names():
    with pytest.raises(names.UnknownResource, match="did you mean sites"):
        names.resolve("sitez", ENDPOINTS)
    with pytest.raises(names.UnknownResource, match="ambiguous"):
        names.resolve("things", {"a/things": "/a/", "b/things": "/b/"})


# -- progress ---------------------------------------------------------------------------------


def workflow(state, done, failed=0, total=8, by_state=None):
    return {
        "id": 12,
        "kind": "upgrade",
        "state": state,
        "state_reason": "",
        "progress": {
            "targets": 2,
            "by_state": by_state or {"running": 1, "succeeded": 1},
            "steps": {"total": total, "done": done, "failed": failed},
            "percent": 50.0,
        },
    }


def test_progress_summary_and_counts():
    running = workflow("running", 3, failed=1)
    assert progress.step_counts(running) == (4, 8, 1)
    assert progress.summary(running) == (
        "workflow 12 (upgrade) running: 4/8 steps, 1 failed, servers 1/2 finished (50.0%)"
    )
    # the rollback steps a good upgrade never needed are skipped: a success is all done
    assert progress.step_counts(workflow("succeeded", 6)) == (8, 8, 0)
    assert progress.exit_code("succeeded") == 0
    assert progress.exit_code("failed") == progress.exit_code("cancelled") == 1


# -- purity -----------------------------------------------------------------------------------


def test_the_cli_imports_nothing_of_the_control_plane():
    """Statically (each module) and for real: importing the CLI loads no Django."""
    allowed_factory = {"factory.cli", "factory.wire"}
    for path in sorted((ROOT / "factory" / "cli").glob("*.py")):
        for module in imported_modules(str(path)):
            top = module.split(".")[0]
            assert top not in {"django", "rest_framework", "tenants", "provisioning", "celery"}
            if top == "factory":
                assert any(module == a or module.startswith(f"{a}.") for a in allowed_factory), (
                    path.name,
                    module,
                )
    probe = (
        "import sys, factory.cli.__main__; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'rest_framework', 'tenants', 'provisioning', 'celery', 'psycopg'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- views ------------------------------------------------------------------------------------


def test_the_progress_bar_renders_and_lines_print_only_changes():
    screen = io.StringIO()
    bar = progress.Bar(screen)
    bar.update(workflow("running", 3))
    bar.update(workflow("succeeded", 6, by_state={"succeeded": 2}))
    bar.close()
    assert "workflow 12 upgrade succeeded" in screen.getvalue()
    assert "8/8" in screen.getvalue()

    log = io.StringIO()
    lines = progress.view_for(log)  # not a terminal: a line per change
    for state in (workflow("running", 3), workflow("running", 3), workflow("running", 4)):
        lines.update(state)
    assert log.getvalue().count("\n") == 2


def test_an_event_as_a_line():
    event = {
        "id": 3,
        "kind": "workflow.state_changed",
        "occurred_at": "2026-12-01T12:00:00Z",
        "tenant": "acme",
        "subject": {"type": "workflow", "id": 17, "name": "FRA1 upgrade"},
        "data": {"from": "running", "to": "succeeded"},
    }
    assert events.line(event) == (
        '2026-12-01T12:00:00Z  workflow.state_changed  acme  workflow 17 "FRA1 upgrade"  '
        '{"from":"running","to":"succeeded"}'
    )
    provider_wide = {**event, "tenant": None, "data": {}}
    assert events.line(provider_wide).split("  ")[2] == "-"
