"""The declared parameters: checking values against a declaration, and what each workflow kind
and manual step declares (pure: no database)."""

import math

import pytest

from provisioning.workflows import definition_for, spec_schema
from provisioning.workflows.params import Param, ParamError, ParamSet, merged_schema
from tests.support.purity import imported_modules

SET = ParamSet(
    Param("name", str, "A name.", required=True, minimum=1, maximum=8),
    Param("size", int, "A size.", default=10, minimum=1, maximum=100),
    Param("share", float, "A share.", minimum=0, maximum=100),
    Param("on", bool, "A switch.", default=True),
    Param("ids", list, "Some ids.", item=Param("id", int, "An id.", minimum=1), maximum=3),
)


def problems(data, params=SET, **kwargs) -> dict[str, str]:
    with pytest.raises(ParamError) as refused:
        params.clean(data, **kwargs)
    return {p.name: p.code for p in refused.value.problems}


def test_the_declaration_is_free_of_django():
    modules = imported_modules("provisioning/workflows/params.py")
    assert not any(m.split(".")[0] in ("django", "rest_framework") for m in modules), modules


def test_defaults_are_filled_in_and_values_kept():
    assert SET.clean({"name": "a"}) == {"name": "a", "size": 10, "on": True}
    assert SET.clean({"name": "a", "size": 3.0, "share": 5, "on": False, "ids": [1, 2.0]}) == {
        "name": "a",
        "size": 3,  # an integral number is a whole number
        "share": 5.0,
        "on": False,
        "ids": [1, 2],
    }


def test_every_fault_is_named_at_once():
    assert problems({"size": 0, "share": 101, "bogus": 1, "other": 2}) == {
        "name": "required",
        "size": "min_value",
        "share": "max_value",
        "bogus": "unknown",
        "other": "unknown",
    }


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        ({"size": True}, "size", "invalid"),  # bool is an int in Python, not here
        ({"size": "10"}, "size", "invalid"),
        ({"size": 2.5}, "size", "invalid"),
        ({"size": None}, "size", "invalid"),
        ({"share": math.nan}, "share", "invalid"),
        ({"share": math.inf}, "share", "invalid"),
        ({"share": False}, "share", "invalid"),
        ({"on": 1}, "on", "invalid"),
        ({"on": "true"}, "on", "invalid"),
        ({"name": ""}, "name", "min_length"),
        ({"name": "x" * 9}, "name", "max_length"),
        ({"name": 7}, "name", "invalid"),
        ({"ids": 1}, "ids", "invalid"),
        ({"ids": [1, 2, 3, 4]}, "ids", "max_length"),
        ({"ids": [1, 0]}, "ids.1", "min_value"),
    ],
)
def test_types_and_bounds(data, name, code):
    assert problems({"name": "a", **data}) == {name: code}


def test_messages_name_the_parameter_and_the_bound():
    with pytest.raises(ParamError) as refused:
        SET.clean({"name": "a", "size": 0})
    assert refused.value.problems[0].message == "size must be at least 1 (not 0)"


def test_a_partial_change_fills_nothing_in_and_requires_nothing():
    assert SET.clean({"size": 5}, partial=True) == {"size": 5}
    assert problems({"size": 500}, partial=True) == {"size": "max_value"}


def test_a_declaration_that_contradicts_itself_is_refused():
    with pytest.raises(ParamError):
        Param("size", int, "", default=0, minimum=1)
    with pytest.raises(ValueError, match="declared twice: size"):
        ParamSet(Param("size", int, ""), Param("size", int, ""))
    with pytest.raises(TypeError):
        Param("ids", list, "")
    with pytest.raises(TypeError):
        Param("when", dict, "")
    with pytest.raises(KeyError):
        SET.with_defaults(bogus=1)


def test_json_schema():
    schema = SET.json_schema()
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    assert schema["properties"]["size"] == {
        "type": "integer",
        "description": "A size.",
        "minimum": 1,
        "maximum": 100,
        "default": 10,
    }
    assert schema["properties"]["name"]["maxLength"] == 8
    assert schema["properties"]["ids"]["items"] == {"type": "integer", "minimum": 1}
    merged = merged_schema({"a": SET, "b": SET.with_defaults(size=20)})
    size = merged["properties"]["size"]
    assert "default" not in size and size["description"].endswith(
        "Applies to: a (default 10); b (default 20)."
    )
    assert merged["properties"]["name"]["description"].endswith("a (required); b (required).")


# --- what the kinds declare --------------------------------------------------------------


def test_the_upgrade_declares_the_spec_the_readme_lists():
    spec = definition_for("upgrade").spec_params
    defaults = {p.name: p.default for p in spec if p.default is not None}
    assert defaults == {
        "canary_size": 1,
        "batch_size": 10,
        "max_unavailable_per_domain": 1,
        "max_unavailable_units": 1,
        "soak_seconds": 300,
        "health_gate_max_failed_chips": 0,
        "max_failures": 1,
        "max_failure_pct": 10.0,
        "rollback": True,
        "poll_seconds": 30.0,
        "command_timeout_seconds": 900,
    }
    assert [p.name for p in spec if p.required] == ["firmware_version"]
    assert problems({"firmware_version": "2", "batch_size": 0, "soak_seconds": -1}, spec) == {
        "batch_size": "min_value",
        "soak_seconds": "min_value",
    }


def test_each_kind_takes_only_what_it_reads():
    kinds = ("deploy", "upgrade", "maintain")
    deploy, upgrade, maintain = (definition_for(k).spec_params for k in kinds)
    assert "canary_size" not in deploy and "rollback" not in maintain
    assert "technician" in maintain and "technician" not in upgrade
    assert deploy["max_bad_chips"].default == 2
    assert deploy.clean({})["poll_seconds"] == 30.0  # firmware: the baseline, found later
    for kind in (deploy, upgrade, maintain):
        assert "firmware_sha256" not in kind  # read from the release, never from the caller
    assert set(spec_schema()["properties"]) == {
        p.name for kind in (deploy, upgrade, maintain) for p in kind
    }


def test_manual_steps_declare_their_inputs():
    maintain = definition_for("maintain")
    assert maintain.manual_steps == ("dispatch", "repair")
    dispatch = maintain.manual_step("dispatch").inputs
    assert dispatch.clean({"technician": 4, "from_country": "DE"}) == {
        "technician": 4,
        "from_country": "DE",
        "remote": False,
    }
    assert problems({"from_country": "D"}, dispatch) == {
        "technician": "required",
        "from_country": "min_length",
    }
    assert maintain.manual_step("drain") is None and maintain.manual_step("bogus") is None
    assert definition_for("upgrade").manual_steps == ()


def test_the_upgrade_plan_is_its_step_list():
    upgrade = definition_for("upgrade")
    planned = [s.name for s in upgrade.steps if not s.compensation_only]
    assert planned == ["drain", "flash", "health_check", "restore"]

    class Server:
        firmware_version = "1.0"

    plan = upgrade.plan(None, Server())
    assert [s.name for s in plan] == planned
    assert plan[1].input == {"from_version": "1.0"}
