"""Which collection a name on the command line means. Pure.

The API root (``GET /api/v1/``) lists every collection by its route (``sites``,
``sovereignty/access-requests``, ``catalog/chip-models``); a person may say ``site``,
``access-requests`` or ``access_request`` for one of them, as long as only one fits.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping


class UnknownResource(LookupError):
    pass


def _forms(name: str) -> list[str]:
    """``name`` and the plurals it may stand for (``policy`` → ``policies``)."""
    name = name.strip().strip("/").lower().replace("_", "-")
    forms = [name, f"{name}s", f"{name}es"]
    if name.endswith("y"):
        forms.append(f"{name[:-1]}ies")
    if name.endswith("is"):
        forms.append(f"{name[:-2]}es")  # basis → bases
    return forms


def resolve(name: str, endpoints: Mapping[str, str]) -> str:
    """The endpoint name ``name`` means: the endpoint of that name (or its plural); else the
    one whose last part is (``access-request`` → ``sovereignty/access-requests``). Two that
    fit equally, or none, is an UnknownResource naming the candidates."""
    forms = _forms(name)
    for form in forms:
        if form in endpoints:
            return form
    for form in forms:
        tails = sorted(n for n in endpoints if n.rsplit("/", 1)[-1] == form)
        if len(tails) == 1:
            return tails[0]
        if tails:
            raise UnknownResource(f"{name!r} is ambiguous: {', '.join(tails)}")
    close = difflib.get_close_matches(forms[0], list(endpoints), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UnknownResource(f"no resource {name!r}{hint} (factoryctl resources lists them)")
