"""The OData documents of a device: ``$metadata`` (the CSDL schemas it serves) and the service
document at ``/redfish/v1/odata``.

The schemas are derived from what the device actually serves: its resources are walked from
the service root (one resource per URI shape, so 144 chips count once), and every
``@odata.type`` names its namespace and versioned namespace, as DMTF's mockups list them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from factory.simulator.redfish.common import ROOT, HttpError, Stream, Tree, services

SCHEMAS = "http://redfish.dmtf.org/schemas/v1"
#: Types every device answers with outside its resources (error messages) and in the service
#: container.
BASELINE = ("#ServiceRoot.v1_20_0.ServiceRoot", "#Message.v1_1_0.Message")
_DIGITS = re.compile(r"\d+")


def _links(body: object) -> Iterable[str]:
    """Every ``@odata.id`` a body points to (members, links, sub-resources)."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "@odata.id" and isinstance(value, str):
                yield value
            else:
                yield from _links(value)
    elif isinstance(body, list):
        for item in body:
            yield from _links(item)


def served_types(tree: Tree, limit: int = 2000) -> set[str]:
    """The ``@odata.type`` values of the device's resources."""
    types = set(BASELINE)
    seen_shapes: set[str] = set()
    queue = [ROOT]
    while queue and len(seen_shapes) < limit:
        path = queue.pop()
        shape = _DIGITS.sub("#", path)
        if shape in seen_shapes:
            continue
        seen_shapes.add(shape)
        try:
            body = tree.get(path)
        except HttpError:
            continue
        if isinstance(body, Stream):
            body.close()
            continue
        if isinstance(body.get("@odata.type"), str):
            types.add(body["@odata.type"])
        for target in _links(body):
            target = target.split("#")[0].rstrip("/")
            if target.startswith(ROOT) and target != path:
                queue.append(target)
    for module in services():
        declared = getattr(module, "types", None)
        if declared is not None:
            types.update(declared(tree))
    return types


def namespaces(types: Iterable[str]) -> dict[str, set[str]]:
    """Schema file -> the namespaces to include from it (``Processor`` -> ``Processor`` and
    ``Processor.v1_22_0``)."""
    out: dict[str, set[str]] = {}
    for odata_type in types:
        parts = odata_type.lstrip("#").split(".")
        if len(parts) < 2:
            continue
        name = parts[0]
        out.setdefault(name, {name})
        if len(parts) == 3:
            out[name].add(f"{name}.{parts[1]}")
    return out


def metadata_document(tree: Tree) -> str:
    """The CSDL ``$metadata`` document of a device."""
    oem = {tree.flavour.oem}
    types = served_types(tree)
    refs = []
    for name, included in sorted(namespaces(types).items()):
        if name in oem:
            continue  # OEM types have no DMTF schema file
        includes = "".join(
            f"\n    <edmx:Include Namespace={quoteattr(ns)}/>"
            for ns in sorted(included, key=lambda n: (n != name, n))
        )
        refs.append(
            f"  <edmx:Reference Uri={quoteattr(f'{SCHEMAS}/{name}_v1.xml')}>{includes}\n"
            "  </edmx:Reference>"
        )
    root_ns = next(
        (t.lstrip("#").rsplit(".", 1)[0] for t in types if t.startswith("#ServiceRoot.v")),
        "ServiceRoot.v1_20_0",
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">\n'
        + "\n".join(refs)
        + f'\n  <edmx:Reference Uri="{SCHEMAS}/RedfishExtensions_v1.xml">\n'
        '    <edmx:Include Namespace="RedfishExtensions.v1_0_0" Alias="Redfish"/>\n'
        "  </edmx:Reference>\n"
        "  <edmx:DataServices>\n"
        '    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">\n'
        f'      <EntityContainer Name="Service" Extends="{root_ns}.ServiceContainer"/>\n'
        "    </Schema>\n"
        "  </edmx:DataServices>\n"
        "</edmx:Edmx>\n"
    )


def service_document(tree: Tree) -> dict:
    """The OData service document: the service root and its top-level resources."""
    root = tree.get(ROOT)
    assert isinstance(root, dict)
    value = [{"name": "Service", "kind": "Singleton", "url": f"{ROOT}/"}]
    for key, target in root.items():
        if isinstance(target, dict) and set(target) == {"@odata.id"} and key != "Links":
            value.append({"name": key, "kind": "Singleton", "url": target["@odata.id"]})
    return {"@odata.context": f"{ROOT}/$metadata", "value": value}
