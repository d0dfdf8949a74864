from factory.telemetry.models.faults import Fault
from factory.telemetry.models.samples import ServerRollup, ServerSample
from factory.telemetry.models.state import DeviceReading, ServerTelemetry, TelemetrySource

__all__ = [
    "DeviceReading",
    "Fault",
    "ServerRollup",
    "ServerSample",
    "ServerTelemetry",
    "TelemetrySource",
]
