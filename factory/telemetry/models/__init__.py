from factory.telemetry.models.faults import Fault
from factory.telemetry.models.samples import (
    RollupBacklog,
    RollupCursor,
    ServerRollup,
    ServerSample,
)
from factory.telemetry.models.state import DeviceReading, ServerTelemetry, TelemetrySource

__all__ = [
    "DeviceReading",
    "Fault",
    "RollupBacklog",
    "RollupCursor",
    "ServerRollup",
    "ServerSample",
    "ServerTelemetry",
    "TelemetrySource",
]
