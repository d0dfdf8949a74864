"""The wire contract: every name the control plane, the site agent and the simulated hardware
must agree on, spelled once.

The site agent and the simulator ship to a site without the control plane (the slim ``site``
image), so they cannot import the control plane's choices; the control plane must not depend on
them either. All three import this module instead, and nothing else spells a command kind, a
metric, an OEM key or an agent endpoint: a rename here is a rename everywhere, and a test checks
the Django choices are built from it. Standard library only, and no import of ``factory.*``.

Sections: the agent gateway (HTTP); commands; telemetry reports; events and fault rules; the
Redfish OEM extension the agent reads from the BMCs; devices and the site layout.
Dict keys are plain ``str`` constants (orjson refuses ``str`` subclasses as keys); closed
vocabularies that travel as values are ``StrEnum``.
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired`` at run time
# (``__required_keys__``), which postponed annotations would hide on Python 3.11.
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Final, NotRequired, TypedDict

# --- The agent gateway: HTTP, always opened by the agent (outbound only from the site) ------

API_ROOT: Final = "/api/v1/"
AUTH_HEADER: Final = "Authorization"
AUTH_SCHEME: Final = "Agent"  # ``Authorization: Agent <token>``: not a person's Bearer token

# Relative to API_ROOT (the control plane's URL conf mounts them there).
CONFIG_PATH: Final = "agent/config/"
TELEMETRY_PATH: Final = "agent/telemetry/"
EVENTS_PATH: Final = "agent/events/"
CLAIM_PATH: Final = "agent/commands/claim/"
RESULTS_PATH: Final = "agent/commands/results/"
RESULT_PATH: Final = "agent/commands/{command_id}/result/"

# Limits the control plane enforces; the agent stays within them rather than learn by refusal.
MAX_CLAIM: Final = 100  # commands per claim
MAX_CLAIM_WAIT_SECONDS: Final = 25.0  # long-poll cap, below common proxy idle timeouts
MAX_RESULTS: Final = 100  # results per POST agent/commands/results/
MAX_ERROR_LENGTH: Final = 1000  # characters of a command's error kept
MAX_EVENTS: Final = 1000  # events per POST agent/events/
MAX_SOURCE_LENGTH: Final = 80  # a report's or event's source (a device serial)
MAX_EPOCH_LENGTH: Final = 64  # a report's ReportEpoch (the agent's numbering identity)


def authorization(token: str) -> str:
    """The ``Authorization`` header value carrying a site agent's credential."""
    return f"{AUTH_SCHEME} {token}"


def api_url(base: str, path: str, **params: object) -> str:
    """Absolute URL of a gateway path (``RESULT_PATH`` takes ``command_id``)."""
    return f"{base.rstrip('/')}{API_ROOT}{path.format(**params)}"


def route(path: str) -> str:
    """A gateway path as a Django route (``{command_id}`` becomes a UUID converter)."""
    return path.format(command_id="<uuid:command_id>")


def fields(shape: type) -> tuple[str, ...]:
    """The keys of a message shape (a TypedDict below), in declaration order."""
    return tuple(shape.__annotations__)


class ClaimRequest(TypedDict):
    limit: int  # 1..MAX_CLAIM
    wait_seconds: float  # 0..MAX_CLAIM_WAIT_SECONDS


class ClaimedCommand(TypedDict):
    id: str
    kind: str  # a CommandKind
    ultraserver: int | None
    ultraserver_serial: str | None
    params: dict[str, object]  # COMMANDS[kind].params
    result_due_at: str | None


class ClaimResponse(TypedDict):
    commands: list[ClaimedCommand]
    # Set when the control plane had no thread to wait with (too many long-polls at once) and
    # nothing was queued: claim again after this long rather than at once.
    retry_after_seconds: NotRequired[float]


class CommandOutcome(TypedDict):
    """POST agent/commands/{id}/result/; repeating the same outcome is harmless."""

    ok: bool
    result: dict[str, object]  # COMMANDS[kind].result when ok
    error: str  # at most MAX_ERROR_LENGTH characters


class BatchOutcome(CommandOutcome):
    id: str


class BatchOutcomes(TypedDict):
    """POST agent/commands/results/: up to MAX_RESULTS, recorded all or nothing."""

    results: list[BatchOutcome]


class AgentConfig(TypedDict):
    """GET agent/config/: what may leave the site (the egress rule) and how often to send."""

    site: str
    interval_seconds: float
    telemetry_categories: list[str]  # Category values
    metrics: list[str]  # the chip metrics of those categories


class TelemetryBatch(TypedDict):
    """POST agent/telemetry/: MetricReports (see the telemetry section)."""

    reports: list[dict[str, object]]


REPORTS: Final = "reports"  # TelemetryBatch's key, read from the raw body (no serializer)


class IngestAnswer(TypedDict):
    accepted: int  # reports stored
    #: Reports acknowledged without storing them: numbered at or below their epoch's watermark
    #: (seen before), or a sample of the same server and Timestamp already stored.
    replayed: int
    chip_samples: int
    dropped_metrics: list[str]
    faults_opened: int


class Event(TypedDict):
    """One discrete event (POST agent/events/): a fault at once, not at the next sample."""

    source: str  # device serial
    kind: str  # an EventKind
    chip: NotRequired[int | None]
    feed: NotRequired[str]
    message: NotRequired[str]
    timestamp: str  # ISO 8601 with zone
    #: What the source is (a DeviceKind): a leak at a CDU isolates what it cools even before
    #: the control plane has any reading of that CDU.
    device_kind: NotRequired[str]


class EventBatch(TypedDict):
    events: list[Event]  # up to MAX_EVENTS


# --- Commands: what the control plane asks of a site's hardware -----------------------------


class CommandKind(StrEnum):
    INSTALL_CHECK = "install-check"
    FLASH_FIRMWARE = "flash-firmware"
    ACTIVATE_BANK = "activate-bank"
    RESET = "reset"
    BURN_IN = "burn-in"
    INTERCONNECT_CHECK = "interconnect-check"
    DRAIN = "drain"
    UNDRAIN = "undrain"
    QUERY_STATE = "query-state"


class CommandParam:
    """Command parameters (``ClaimedCommand.params``)."""

    VERSION: Final = "version"  # firmware version to flash or boot
    ORIGIN: Final = "origin"  # who built the firmware image (part of its URI)
    RESET_TYPE: Final = "reset_type"  # a Redfish ResetType; ForceRestart if absent
    QUICK: Final = "quick"  # a short burn-in (health check) rather than the full one
    RACK: Final = "rack"  # where an install-check expects the server (for the technician)
    POSITION: Final = "position"
    COMPONENT: Final = "component"  # a FirmwareComponent to flash (SimpleUpdate Targets)
    #: SHA-256 (hex) the image must have: the agent downloads it, checks, and flashes only
    #: those bytes; a different image is refused, nothing flashed.
    DIGEST: Final = "sha256"


class HardwareState:
    """The hardware's real state: what ``query-state`` answers, and every command that changes
    it, so a workflow step can tell whether a command whose result was lost took effect."""

    FIRMWARE_VERSION: Final = "firmware_version"
    INACTIVE_FIRMWARE_VERSION: Final = "inactive_firmware_version"  # the other (A/B) bank
    DRAINED: Final = "drained"
    CABLED: Final = "cabled"
    POWER_STATE: Final = "power_state"  # Redfish PowerState: On / Off
    KEYS: Final = (FIRMWARE_VERSION, INACTIVE_FIRMWARE_VERSION, DRAINED, CABLED, POWER_STATE)
    #: Optional beside KEYS: ``{component: version}`` read from UpdateService/FirmwareInventory,
    #: one entry per FirmwareComponent (an agent that cannot read it leaves it out).
    FIRMWARE_INVENTORY: Final = "firmware_inventory"


class FirmwareComponent(StrEnum):
    """The parts of an UltraServer that carry their own firmware: what a firmware bundle names
    and verification reads back (``HardwareState.FIRMWARE_INVENTORY``)."""

    BMC = "bmc"
    BIOS = "bios"  # the system firmware (UEFI): ComputerSystem.BiosVersion
    NIC = "nic"
    ACCELERATOR_TRAY = "accelerator-tray"
    SWITCH_TRAY = "switch-tray"
    POWER_SHELF = "power-shelf"


class BurnInResult:
    TESTED: Final = "tested"  # chips tested
    FAILED_CHIPS: Final = "failed_chips"  # [{INDEX, DETAIL}]
    INDEX: Final = "index"
    DETAIL: Final = "detail"
    KEYS: Final = (TESTED, FAILED_CHIPS)


class InterconnectResult:
    LINKS_OK: Final = "links_ok"  # count
    LINKS_DOWN: Final = "links_down"  # ["Chip3/Ports/Link1", ...]
    KEYS: Final = (LINKS_OK, LINKS_DOWN)


@dataclass(frozen=True)
class CommandSpec:
    label: str
    params: tuple[str, ...] = ()  # every parameter it takes
    required: tuple[str, ...] = ()  # those it cannot do without
    result: tuple[str, ...] = ()  # the keys of its result when it succeeds
    optional: tuple[str, ...] = ()  # keys a result may carry beside those (an agent may not)


COMMANDS: Final[Mapping[CommandKind, CommandSpec]] = MappingProxyType(
    {
        CommandKind.INSTALL_CHECK: CommandSpec(
            "Confirm installed and cabled",
            params=(CommandParam.RACK, CommandParam.POSITION),
            result=HardwareState.KEYS,
            optional=(HardwareState.FIRMWARE_INVENTORY,),
        ),
        CommandKind.FLASH_FIRMWARE: CommandSpec(
            "Flash firmware (SimpleUpdate)",
            params=(
                CommandParam.VERSION,
                CommandParam.ORIGIN,
                CommandParam.COMPONENT,
                CommandParam.DIGEST,
            ),
            required=(CommandParam.VERSION,),
            result=HardwareState.KEYS,
            optional=(HardwareState.FIRMWARE_INVENTORY,),
        ),
        CommandKind.ACTIVATE_BANK: CommandSpec(
            "Boot the other firmware bank (rollback)",
            params=(CommandParam.VERSION,),
            required=(CommandParam.VERSION,),
            result=HardwareState.KEYS,
            optional=(HardwareState.FIRMWARE_INVENTORY,),
        ),
        CommandKind.RESET: CommandSpec(
            "Reset (ComputerSystem.Reset)",
            params=(CommandParam.RESET_TYPE,),
            result=HardwareState.KEYS,
            optional=(HardwareState.FIRMWARE_INVENTORY,),
        ),
        CommandKind.BURN_IN: CommandSpec(
            "Run burn-in", params=(CommandParam.QUICK,), result=BurnInResult.KEYS
        ),
        CommandKind.INTERCONNECT_CHECK: CommandSpec(
            "Validate interconnect", result=InterconnectResult.KEYS
        ),
        CommandKind.DRAIN: CommandSpec(
            "Drain workloads",
            result=HardwareState.KEYS,
            optional=(HardwareState.FIRMWARE_INVENTORY,),
        ),
        CommandKind.UNDRAIN: CommandSpec(
            "Return to scheduling",
            result=HardwareState.KEYS,
            optional=(HardwareState.FIRMWARE_INVENTORY,),
        ),
        CommandKind.QUERY_STATE: CommandSpec(
            "Read the real hardware state",
            result=HardwareState.KEYS,
            optional=(HardwareState.FIRMWARE_INVENTORY,),
        ),
    }
)

FIRMWARE_IMAGE_SUFFIX: Final = ".bin"


def firmware_image_uri(base: str, origin: str, version: str) -> str:
    """Where a BMC fetches firmware ``version`` (SimpleUpdate's ImageURI)."""
    return f"{base}/{origin}/{version}{FIRMWARE_IMAGE_SUFFIX}"


def firmware_version_of(image_uri: str) -> str:
    """The version an ImageURI carries (what the BMC then reports running)."""
    return image_uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(FIRMWARE_IMAGE_SUFFIX)


# --- Telemetry: Redfish MetricReports, per-chip values in the OEM section -------------------
# A standard MetricValues entry per chip and metric would be 1.1 million JSON objects a second
# for a million chips; instead a BMC's report carries one list per metric, one value per chip.
# Each source numbers its reports (ReportSequence from 1) within the agent's numbering epoch
# (Oem.AIFactory.ReportEpoch: random, new whenever an agent opens its outbox, so a lost or
# restored outbox or a second agent never reuses numbers the control plane has seen); a number
# at or below the epoch's highest is a replay. Reports without ReportEpoch come from agents
# older than epochs (epoch ""); a batch that carries it on one report carries it on all.
#
#   {"reports": [{"@odata.type": "#MetricReport.v1_5_2.MetricReport", "Id": "ChipMetrics",
#                 "ReportSequence": "42", "Timestamp": "2026-11-28T10:00:00.000Z",
#                 "MetricValues": [],
#                 "Oem": {"AIFactory": {"Source": "FRA1-TRN3-0101",
#                                       "ReportEpoch": "9f2c41d07ab3e615",
#                                       "Chips": {"power_w": [...], "temp_c": [...], ...}}}},
#                {"Id": "PduMetrics", "ReportSequence": "7", "Timestamp": "...",
#                 "Oem": {"AIFactory": {"Source": "FRA1-R01-PDU",
#                                       "Feeds": {"FRA1-R01-A": {"power_w": 61000, "up": true}}}}},
#                {"Id": "CduMetrics", "ReportSequence": "7", "Timestamp": "...",
#                 "Oem": {"AIFactory": {"Source": "FRA1-CDU1", "SupplyTemperatureCelsius": 30.2,
#                                       "HeatLoadWatts": 840000}}}]}

OEM: Final = "AIFactory"  # our Redfish OEM namespace, in reports, resources and actions
METRIC_REPORT_TYPE: Final = "#MetricReport.v1_5_2.MetricReport"


class ReportId(StrEnum):
    CHIPS = "ChipMetrics"  # a BMC: every chip of one UltraServer
    PDU = "PduMetrics"  # a rack's PDUs: each feed
    CDU = "CduMetrics"  # a coolant distribution unit


class ReportKey:
    """Keys of a report's ``Oem[OEM]``: Source and one of Chips, Feeds, SupplyTemperature."""

    SOURCE: Final = "Source"  # device serial, 1..MAX_SOURCE_LENGTH characters
    EPOCH: Final = "ReportEpoch"  # the numbering epoch, 0..MAX_EPOCH_LENGTH characters
    CHIPS: Final = "Chips"  # {metric: [value per chip]}
    FEEDS: Final = "Feeds"  # {feed name: {FeedReading.POWER_W, FeedReading.UP}}
    SUPPLY_TEMPERATURE: Final = "SupplyTemperatureCelsius"  # CDU (also the CDU's own Oem)
    HEAT_LOAD: Final = "HeatLoadWatts"  # CDU, optional


class FeedReading:
    POWER_W: Final = "power_w"  # number
    UP: Final = "up"  # bool


class Category(StrEnum):
    """Telemetry categories a sovereignty egress rule speaks of (what may leave the site)."""

    POWER = "power"
    THERMAL = "thermal"
    UTILIZATION = "utilization"
    RELIABILITY = "reliability"


class ValueType(StrEnum):
    """How a metric's values are kept and checked: the ``array`` typecode (a JSON number that
    does not fit is refused)."""

    FLOAT32 = "f"
    FLOAT64 = "d"  # energy counters outgrow float32's precision
    INT64 = "q"
    INT8 = "b"

    @property
    def integral(self) -> bool:
        return self in (ValueType.INT64, ValueType.INT8)


class HealthCode(IntEnum):
    """A chip's ``health`` metric (Redfish Status.Health OK / Warning / Critical)."""

    OK = 0
    DEGRADED = 1
    FAILED = 2


class Metric:
    """Per-chip metric names: the keys of ``Chips``, and the BMC MetricReport's MetricIds."""

    POWER_W: Final = "power_w"
    ENERGY_J: Final = "energy_j"
    TEMP_C: Final = "temp_c"
    UTILIZATION: Final = "utilization"
    HBM_USED_GB: Final = "hbm_used_gb"
    ECC_CORRECTED: Final = "ecc_corrected"
    ECC_UNCORRECTED: Final = "ecc_uncorrected"
    LINK_ERRORS: Final = "link_errors"
    LINK_DOWN_S: Final = "link_down_s"
    THROTTLE_S: Final = "throttle_s"
    HEALTH: Final = "health"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: ValueType
    unit: str
    category: Category
    description: str


CHIP_METRICS: Final = (
    MetricSpec(Metric.POWER_W, ValueType.FLOAT32, "W", Category.POWER, "power drawn"),
    MetricSpec(Metric.ENERGY_J, ValueType.FLOAT64, "J", Category.POWER, "energy, lifetime"),
    MetricSpec(Metric.TEMP_C, ValueType.FLOAT32, "°C", Category.THERMAL, "die temperature"),
    MetricSpec(
        Metric.UTILIZATION, ValueType.FLOAT32, "1", Category.UTILIZATION, "busy fraction, 0..1"
    ),
    MetricSpec(Metric.HBM_USED_GB, ValueType.FLOAT32, "GB", Category.UTILIZATION, "HBM in use"),
    MetricSpec(
        Metric.ECC_CORRECTED,
        ValueType.INT64,
        "count",
        Category.RELIABILITY,
        "corrected HBM ECC errors, lifetime",
    ),
    MetricSpec(
        Metric.ECC_UNCORRECTED,
        ValueType.INT64,
        "count",
        Category.RELIABILITY,
        "uncorrectable HBM ECC errors, lifetime",
    ),
    MetricSpec(
        Metric.LINK_ERRORS,
        ValueType.INT64,
        "count",
        Category.RELIABILITY,
        "interconnect receive errors, lifetime",
    ),
    MetricSpec(
        Metric.LINK_DOWN_S,
        ValueType.FLOAT32,
        "s",
        Category.RELIABILITY,
        "link-seconds down, lifetime (summed over the chip's links)",
    ),
    MetricSpec(
        Metric.THROTTLE_S, ValueType.FLOAT32, "s", Category.THERMAL, "seconds throttled, lifetime"
    ),
    MetricSpec(Metric.HEALTH, ValueType.INT8, "code", Category.RELIABILITY, "a HealthCode"),
)
#: Metric names in report order (the simulator's MetricValues, the agent's columns, storage).
METRIC_NAMES: Final = tuple(m.name for m in CHIP_METRICS)
METRICS: Final[Mapping[str, MetricSpec]] = MappingProxyType({m.name: m for m in CHIP_METRICS})

#: Which category a PDU's or CDU's report belongs to, by the key that marks its kind.
DEVICE_REPORT_CATEGORY: Final[Mapping[str, Category]] = MappingProxyType(
    {ReportKey.FEEDS: Category.POWER, ReportKey.SUPPLY_TEMPERATURE: Category.THERMAL}
)


# --- Events and fault rules ------------------------------------------------------------------


class EventKind(StrEnum):
    """What the hardware reports happening: the simulator's fault kinds (``POST /sim/faults``)
    and the agent's events. The control plane maps some of them to a FaultRule."""

    CHIP_FAILURE = "chip-failure"
    HBM_FAILURE = "hbm-failure"  # surfaces as uncorrectable ECC
    ECC_STORM = "ecc-storm"  # a burst of corrected ECC
    LINK_FLAP = "link-flap"  # short, mostly under the limit that kills a job
    LINK_DOWN = "link-down"
    FEED_LOSS = "feed-loss"
    COOLANT_EXCURSION = "coolant-excursion"
    LEAK = "leak"  # coolant at a LeakDetector (tray, rack or CDU): the most urgent fault


class FaultRule(StrEnum):
    """What raised a fault: the control plane's health rules, plus reports by people. Named in
    ``/faults/`` and metrics that outside tools read."""

    ECC_UNCORRECTABLE = "ecc-uncorrectable"
    CHIP_DOWN = "chip-down"
    LINK_DOWN = "link-down"
    THERMAL_THROTTLE = "thermal-throttle"
    FEED_LOSS = "feed-loss"
    COOLANT_EXCURSION = "coolant-excursion"
    AGENT_SILENT = "agent-silent"
    TELEMETRY_STALE = "telemetry-stale"  # a server silent while its site's agent reports
    REPORTED = "reported"
    LEAK = "leak"  # coolant at a LeakDetector: critical, isolates at once (ISOLATING_RULES)


FAULT_RULE_LABELS: Final[Mapping[FaultRule, str]] = MappingProxyType(
    {
        FaultRule.ECC_UNCORRECTABLE: "Uncorrectable ECC",
        FaultRule.CHIP_DOWN: "Chip down",
        FaultRule.LINK_DOWN: "Link down past the limit",
        FaultRule.THERMAL_THROTTLE: "Thermal throttling",
        FaultRule.FEED_LOSS: "Power feed lost",
        FaultRule.COOLANT_EXCURSION: "Coolant supply too warm",
        FaultRule.AGENT_SILENT: "Site agent silent",
        FaultRule.TELEMETRY_STALE: "Server telemetry stopped",
        FaultRule.REPORTED: "Reported by a person",
        FaultRule.LEAK: "Coolant leak",
    }
)


class Severity(StrEnum):
    """How urgent a fault is, for people and their tools (``fault.opened``'s ``severity``, the
    fault's own ``severity``)."""

    INFO = "info"  # worth knowing; nobody need act
    WARNING = "warning"  # degraded or unheard: someone should look, nothing drains
    CRITICAL = "critical"  # act now: hardware or capacity is being lost


class RuleAction(StrEnum):
    """What a rule's fault asks the control plane to do to its server."""

    RECORD = "record"  # recorded and told to the tenant; the server keeps working
    MAINTAIN = "maintain"  # maintenance flag, then a maintain workflow drains and repairs it
    ISOLATE = "isolate"  # powered off at once (ISOLATION_RESET_TYPE), then maintained


@dataclass(frozen=True)
class RulePolicy:
    """A rule's severity and the action its faults ask for."""

    severity: Severity
    action: RuleAction

    @property
    def drains(self) -> bool:
        """The fault takes its server out of service (flag, workflow, unit membership)."""
        return self.action is not RuleAction.RECORD


#: What a provider's SRE expects of each rule; ``FACTORY_FAULT_POLICY`` (settings) overrides a
#: rule's entry, checked by ``fault_policy`` at startup.
DEFAULT_FAULT_POLICY: Final[Mapping[FaultRule, RulePolicy]] = MappingProxyType(
    {
        FaultRule.LEAK: RulePolicy(Severity.CRITICAL, RuleAction.ISOLATE),
        FaultRule.CHIP_DOWN: RulePolicy(Severity.CRITICAL, RuleAction.MAINTAIN),
        FaultRule.ECC_UNCORRECTABLE: RulePolicy(Severity.CRITICAL, RuleAction.MAINTAIN),
        FaultRule.LINK_DOWN: RulePolicy(Severity.CRITICAL, RuleAction.MAINTAIN),
        FaultRule.COOLANT_EXCURSION: RulePolicy(Severity.CRITICAL, RuleAction.MAINTAIN),
        FaultRule.THERMAL_THROTTLE: RulePolicy(Severity.WARNING, RuleAction.RECORD),
        FaultRule.TELEMETRY_STALE: RulePolicy(Severity.WARNING, RuleAction.RECORD),
        FaultRule.AGENT_SILENT: RulePolicy(Severity.WARNING, RuleAction.RECORD),
        FaultRule.FEED_LOSS: RulePolicy(Severity.CRITICAL, RuleAction.RECORD),  # a site's fault
        FaultRule.REPORTED: RulePolicy(Severity.CRITICAL, RuleAction.MAINTAIN),
    }
)
#: Severity by rule, as the defaults say (``severity_of``).
FAULT_RULE_SEVERITY: Final[Mapping[str, Severity]] = MappingProxyType(
    {rule: p.severity for rule, p in DEFAULT_FAULT_POLICY.items()}
)
#: Rules whose fault on a server powers it off at once through the agent (``RESET`` with
#: ``ISOLATION_RESET_TYPE``), before any drain, window or person: coolant must not reach live
#: electronics (HARDWARE.md, leaks). Fixed: ``fault_policy`` refuses to change who isolates.
ISOLATING_RULES: Final = frozenset(
    r for r, p in DEFAULT_FAULT_POLICY.items() if p.action is RuleAction.ISOLATE
)
ISOLATION_RESET_TYPE: Final = "ForceOff"  # Redfish ResetType: the BMC cuts power, no OS shutdown


def fault_policy(
    overrides: Mapping[str, Mapping[str, str]] | None = None,
) -> Mapping[FaultRule, RulePolicy]:
    """The defaults with ``overrides`` (rule -> {"severity"?, "action"?}) applied. Raises
    ValueError naming the rule and key at fault: a typo must stop startup, not silently leave
    a rule at its default. Isolation stays with ``ISOLATING_RULES`` (a safety interlock, not a
    preference): neither moved to another rule nor taken from a leak."""
    policy = dict(DEFAULT_FAULT_POLICY)
    if not isinstance(overrides, Mapping):
        if overrides is None:
            return MappingProxyType(policy)
        raise ValueError("FACTORY_FAULT_POLICY must be a mapping of rule -> {severity, action}")
    rules, severities, actions = (
        ", ".join(e.value for e in enum) for enum in (FaultRule, Severity, RuleAction)
    )
    for name, entry in overrides.items():
        where = f"FACTORY_FAULT_POLICY[{name!r}]"
        if name not in FaultRule._value2member_map_:
            raise ValueError(f"{where}: no such rule (rules: {rules})")
        rule = FaultRule(name)
        if not isinstance(entry, Mapping) or not entry:
            raise ValueError(f"{where}: give a mapping with severity and/or action")
        unknown = sorted(set(entry) - {"severity", "action"})
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (keys: severity, action)")
        severity, action = policy[rule].severity, policy[rule].action
        if "severity" in entry:
            if entry["severity"] not in Severity._value2member_map_:
                raise ValueError(
                    f"{where}['severity']: {entry['severity']!r} is not one of {severities}"
                )
            severity = Severity(entry["severity"])
        if "action" in entry:
            if entry["action"] not in RuleAction._value2member_map_:
                raise ValueError(f"{where}['action']: {entry['action']!r} is not one of {actions}")
            action = RuleAction(entry["action"])
        if (action is RuleAction.ISOLATE) != (rule in ISOLATING_RULES):
            raise ValueError(
                f"{where}['action']: isolation is fixed to {', '.join(sorted(ISOLATING_RULES))}"
                " (a safety interlock, not a preference)"
            )
        policy[rule] = RulePolicy(severity, action)
    return MappingProxyType(policy)


def severity_of(
    rule: str, policy: Mapping[FaultRule, RulePolicy] = DEFAULT_FAULT_POLICY
) -> Severity:
    """A rule's severity under ``policy`` (the defaults unless given); unknown rules are
    critical (a rule nobody classified is not one to ignore)."""
    entry = policy.get(rule)  # type: ignore[call-overload]
    return entry.severity if entry is not None else Severity.CRITICAL


# --- The Redfish OEM extension: what the agent reads from and asks of a BMC -----------------
# Standard Redfish (DMTF's schema) is not repeated here; only the resources we chose and the
# OEM names we added, which a real BMC's firmware implements as the simulator does.

REDFISH_ROOT: Final = "/redfish/v1"
SYSTEM_PATH: Final = f"{REDFISH_ROOT}/Systems/UltraServer"
CHIP_REPORT_PATH: Final = f"{REDFISH_ROOT}/TelemetryService/MetricReports/{ReportId.CHIPS}"
SIMPLE_UPDATE_PATH: Final = f"{REDFISH_ROOT}/UpdateService/Actions/UpdateService.SimpleUpdate"
#: The simulator's ``MultipartHttpPushUri`` (bmcweb's path); an agent reads it from the service.
MULTIPART_PUSH_PATH: Final = f"{REDFISH_ROOT}/UpdateService/update-multipart"
RESET_PATH: Final = f"{SYSTEM_PATH}/Actions/ComputerSystem.Reset"
RACK_PDUS_PATH: Final = f"{REDFISH_ROOT}/PowerEquipment/RackPDUs"
PDU_MAINS: Final = "Mains/AC1"  # below each RackPDU
CDU_PATH: Final = f"{REDFISH_ROOT}/ThermalEquipment/CDUs/1"
CHIP_PREFIX: Final = f"{SYSTEM_PATH}/Processors/Chip"


class OemAction(StrEnum):
    DRAIN = "Drain"
    UNDRAIN = "Undrain"
    BURN_IN = "BurnIn"  # a Task; its Oem[OEM] is the BurnInResult
    ACTIVATE_BANK = "ActivateBank"  # body {ACTIVATE_BANK_VERSION: version}


ACTIVATE_BANK_VERSION: Final = "Version"


class SystemOem:
    """Keys of the ComputerSystem's ``Oem[OEM]``."""

    DRAINED: Final = "Drained"
    CABLED: Final = "Cabled"
    INACTIVE_FIRMWARE_VERSION: Final = "InactiveFirmwareVersion"


def oem_action_path(action: OemAction) -> str:
    return f"{SYSTEM_PATH}/Actions/Oem/{OEM}.{action}"


def chip_path(index: int) -> str:
    """A chip's Processor resource; MetricReport MetricProperty values start with it."""
    return f"{CHIP_PREFIX}{index}"


def chip_index(metric_property: str) -> int:
    """The chip a MetricProperty (or any path below a chip) is about."""
    return int(metric_property.split("/Processors/Chip", 1)[1].split("/", 1)[0])


# --- Devices and the site layout ------------------------------------------------------------


class DeviceKind(StrEnum):
    BMC = "bmc"
    PDU = "pdu"
    CDU = "cdu"


DEVICE_KIND_LABELS: Final[Mapping[DeviceKind, str]] = MappingProxyType(
    {
        DeviceKind.BMC: "UltraServer BMC",
        DeviceKind.PDU: "Rack PDU",
        DeviceKind.CDU: "Coolant distribution unit",
    }
)
PDU_SUFFIX: Final = "-PDU"  # a rack's PDUs report as one source: the rack's name + suffix


def pdu_source(rack: str) -> str:
    return f"{rack}{PDU_SUFFIX}"


def rack_of_pdu(source: str) -> str:
    return source.removesuffix(PDU_SUFFIX)


class DeviceTls(TypedDict, total=False):
    """A device's trust: the site's CA bundle (a path on the agent's host), or the pinned
    SHA-256 of its certificate's DER (``sha256:<hex>``)."""

    ca: str
    pin: str


class Device(TypedDict):
    """One entry of the simulator's ``/sim/devices``, the agent's ``--devices`` list."""

    kind: str  # a DeviceKind
    serial: str
    url: str  # the device's Redfish service
    rack: NotRequired[str]
    position: NotRequired[int]
    feeds: NotRequired[list[str]]
    tls: NotRequired[DeviceTls]  # how the agent trusts an https:// device


class DeviceListing(TypedDict):
    site: str
    control: NotRequired[str]
    devices: list[Device]


class LayoutServer(TypedDict):
    serial: str
    family: str  # a simulator system spec: the catalog model slug's first word
    position: int
    firmware: NotRequired[str]
    flavour: NotRequired[str]  # the simulated BMC's vendor flavour (factory.simulator.flavours)
    firmware_components: NotRequired[dict[str, str]]  # FirmwareComponent -> version
    # The EFA fabric's switches above it, top layer first (EC2's NetworkNodes, as names; the
    # simulator is the provider's): absent when it hangs under no node.
    network_nodes: NotRequired[list[str]]


class LayoutRack(TypedDict):
    name: str
    feeds: dict[str, float]  # feed name -> capacity W
    servers: list[LayoutServer]


class SiteLayout(TypedDict):
    """A site exported by the control plane (``manage.py export_site_layout``) for the
    simulator (``--layout``)."""

    site: str
    racks: list[LayoutRack]
    flavour: NotRequired[str]  # the simulated PDUs' and CDU's vendor flavour
