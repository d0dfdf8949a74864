"""Device flavours: how one vendor's Redfish differs from another's, within the standard.

Real BMCs all speak DSP0266 and still differ: where a task's monitor lives, what their OEM
sections are called, whether they offer server-sent events, how they name their sensors. The
simulator serves each device in a flavour so the site agent is kept honest against more than
one implementation; tests run the agent against both.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.wire import OEM


@dataclass(frozen=True)
class Flavour:
    name: str
    manufacturer: str
    #: The OEM namespace of ``Oem`` sections and OEM actions (``#<oem>.Drain``); an agent finds
    #: OEM actions by their action name under ``Actions.Oem``, never by a fixed URI.
    oem: str
    #: Whether the EventService offers ``ServerSentEventUri`` (push subscriptions always work).
    sse: bool
    #: Whether the UpdateService offers ``MultipartHttpPushUri`` (the image pushed with the
    #: request) besides SimpleUpdate (the BMC fetches an ImageURI itself); many BMCs in the
    #: field have only the second.
    multipart_push: bool
    #: Where a task's monitor lives (DSP0266 leaves the URI to the service); ``{root}`` is
    #: ``/redfish/v1``, ``{task}`` the task's Id.
    task_monitor: str
    #: A sensor's Id: ``{what}`` is the reading (``Temp``, ``Power``, ``Flow``...), ``{where}`` the
    #: place (``Tray3``, ``Inlet``...).
    sensor_id: str

    def monitor_path(self, root: str, task: str) -> str:
        return self.task_monitor.format(root=root, task=task)

    def sensor(self, what: str, where: str) -> str:
        return self.sensor_id.format(what=what, where=where, WHAT=what.upper(), WHERE=where.upper())


FACTORY = Flavour(
    name="factory",
    manufacturer="Factory Simulated Systems",
    oem=OEM,
    sse=True,
    multipart_push=True,
    task_monitor="{root}/TaskService/TaskMonitors/{task}",
    sensor_id="{where}{what}",
)

VENDOR_B = Flavour(
    name="contoso",
    manufacturer="Contoso Hardware",
    oem="Contoso",
    sse=False,
    multipart_push=False,
    task_monitor="{root}/TaskService/Tasks/{task}/Monitor",
    sensor_id="{WHAT}_{WHERE}",
)

FLAVOURS: dict[str, Flavour] = {f.name: f for f in (FACTORY, VENDOR_B)}
DEFAULT = FACTORY
