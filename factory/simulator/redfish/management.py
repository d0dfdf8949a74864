"""The management plane every simulated device serves alike: SessionService, AccountService with
Roles, and the device's own Manager (NetworkProtocol, an EventLog of its faults).

Per DSP0266: a session is created by ``POST SessionService/Sessions`` without credentials in
headers and answers 201 with ``X-Auth-Token`` and the Session's ``Location``; a token idle for
longer than ``SessionTimeout`` stops working; deleting the Session ends it. Privileges follow the
standard roles (Administrator, Operator, ReadOnly) and DSP8011's operation map, coarsely: reads
need ``Login``, account writes ``ConfigureUsers`` (one's own password ``ConfigureSelf``), manager
writes ``ConfigureManager``, everything else ``ConfigureComponents``.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message

from factory.simulator.faults import Fault
from factory.simulator.redfish.common import (
    ROOT,
    SERVICES,
    HttpError,
    Reply,
    Tree,
    collection,
    link,
    message_id,
    now_iso,
    resource,
    status,
)
from factory.simulator.redfish.registries import fault_message

#: Request headers: a mapping, or ``http.server``'s ``Message`` (``get`` is all we use).
Headers = Mapping[str, str] | Message

SESSION_SERVICE = f"{ROOT}/SessionService"
SESSIONS = f"{SESSION_SERVICE}/Sessions"
ACCOUNT_SERVICE = f"{ROOT}/AccountService"
ACCOUNTS = f"{ACCOUNT_SERVICE}/Accounts"
ROLES = f"{ACCOUNT_SERVICE}/Roles"
MANAGERS = f"{ROOT}/Managers"
MANAGER = f"{MANAGERS}/BMC"
NETWORK_PROTOCOL = f"{MANAGER}/NetworkProtocol"
LOG_SERVICES = f"{MANAGER}/LogServices"
EVENT_LOG = f"{LOG_SERVICES}/EventLog"
ENTRIES = f"{EVENT_LOG}/Entries"
CLEAR_LOG = f"{EVENT_LOG}/Actions/LogService.ClearLog"
MANAGER_RESET = f"{MANAGER}/Actions/Manager.Reset"

#: Paths anyone may read or post to (DSP0266 "Service root" and "Sessions" sections).
OPEN_PATHS = frozenset({"/redfish", ROOT, f"{ROOT}/odata", f"{ROOT}/$metadata"})

#: The predefined roles and their privileges (DSP0266, as in DMTF's mockups).
ROLE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "Administrator": (
        "Login",
        "ConfigureManager",
        "ConfigureUsers",
        "ConfigureSelf",
        "ConfigureComponents",
    ),
    "Operator": ("Login", "ConfigureSelf", "ConfigureComponents"),
    "ReadOnly": ("Login", "ConfigureSelf"),
}
MIN_PASSWORD, MAX_PASSWORD = 8, 64
SESSION_TIMEOUT_RANGE = (30, 86_400)  # SessionService.SessionTimeout's schema bounds
MAX_LOG_RECORDS = 1000


@dataclass
class Account:
    id: str
    username: str
    password: str
    role: str
    enabled: bool = True


@dataclass
class Session:
    id: str
    token: str
    username: str
    created: str
    used_at: float  # monotonic, for the idle timeout


@dataclass
class LogEntry:
    id: int
    created: str
    severity: str
    message: str
    message_id: str
    args: list[str]
    origin: str | None


@dataclass
class Principal:
    """Who a request is from, and how (a session, or Basic)."""

    account: Account
    session: Session | None = None

    @property
    def privileges(self) -> tuple[str, ...]:
        return ROLE_PRIVILEGES.get(self.account.role, ())


@dataclass
class NetworkSettings:
    host_name: str
    http: tuple[bool, int]
    https: tuple[bool, int]
    ssh: tuple[bool, int] = (False, 22)
    ntp_enabled: bool = True
    ntp_servers: list[str | None] = field(default_factory=lambda: ["pool.ntp.org"])


class Management:
    """One device's sessions, accounts, network settings and event log."""

    def __init__(self, tree: Tree):
        self.tree = tree
        self.accounts: dict[str, Account] = {}
        self.sessions: dict[str, Session] = {}
        self.session_timeout = 600
        self.log: list[LogEntry] = []
        self.next_entry = 1
        self.next_account = 1
        self.next_session = 1
        self.log_cleared_at = now_iso()
        self._admin_loaded = False
        self.network = NetworkSettings(
            host_name=tree.name.lower(), http=(True, 80), https=(False, 443)
        )

    # --- accounts ----------------------------------------------------------------------------

    def ensure_admin(self) -> None:
        """The administrator comes from the server's credentials, known after the tree is
        built: create it on first use."""
        if not self._admin_loaded:
            self._admin_loaded = True
            username, password = self.tree.admin_credentials
            self.add_account(username, password, "Administrator")

    def add_account(self, username: str, password: str, role: str) -> Account:
        account = Account(str(self.next_account), username, password, role)
        self.next_account += 1
        self.accounts[account.id] = account
        return account

    def by_username(self, username: str) -> Account | None:
        self.ensure_admin()
        return next((a for a in self.accounts.values() if a.username == username), None)

    def check_password(self, username: str, password: str) -> Account | None:
        account = self.by_username(username)
        if account is None or not account.enabled:
            return None
        if not hmac.compare_digest(account.password.encode(), password.encode()):
            return None
        return account

    # --- sessions ----------------------------------------------------------------------------

    def expire(self) -> None:
        cutoff = time.monotonic() - self.session_timeout
        for sid in [s.id for s in self.sessions.values() if s.used_at < cutoff]:
            del self.sessions[sid]

    def open_session(self, account: Account) -> Session:
        session = Session(
            id=str(self.next_session),
            token=secrets.token_hex(16),
            username=account.username,
            created=now_iso(),
            used_at=time.monotonic(),
        )
        self.next_session += 1
        self.sessions[session.id] = session
        return session

    def by_token(self, token: str) -> Session | None:
        self.expire()
        for session in self.sessions.values():
            if hmac.compare_digest(session.token.encode(), token.encode()):
                session.used_at = time.monotonic()
                return session
        return None

    # --- event log ---------------------------------------------------------------------------

    def record(self, fault: Fault) -> None:
        if fault.target != self.tree.name:
            return
        origin_of = getattr(self.tree, "origin_of", None)
        origin = origin_of(fault) if origin_of is not None else None
        origin = origin or default_origin(self.tree)
        record = fault_message(fault, origin or ROOT)
        self.log.append(
            LogEntry(
                self.next_entry,
                now_iso(),
                record["MessageSeverity"],
                record["Message"],
                record["MessageId"],
                record.get("MessageArgs", []),
                origin,
            )
        )
        self.next_entry += 1
        del self.log[:-MAX_LOG_RECORDS]


def bind(tree: Tree, port: int, *, tls: bool) -> None:
    """Where the device listens: what its NetworkProtocol reports."""
    net = state(tree).network
    net.http = (not tls, port if not tls else 80)
    net.https = (tls, port if tls else 443)


def state(tree: Tree) -> Management:
    found = tree.extensions.get("management")
    if found is None:
        found = tree.extensions["management"] = Management(tree)
    assert isinstance(found, Management)
    return found


def members_of(tree: Tree, path: str) -> list[str]:
    """The member URIs of one of the tree's own collections ([] when it has none)."""
    body = tree.resource(path)
    if not isinstance(body, dict):
        return []
    return [m["@odata.id"] for m in body.get("Members", [])]


def default_origin(tree: Tree) -> str | None:
    """Where a fault is, when the tree does not say: its system, chassis or equipment."""
    for path in (
        f"{ROOT}/Systems",
        f"{ROOT}/Chassis",
        f"{ROOT}/PowerEquipment/RackPDUs",
        f"{ROOT}/ThermalEquipment/CDUs",
    ):
        members = members_of(tree, path)
        if members:
            return members[0]
    return None


# --- authentication and privileges ---------------------------------------------------------


def _unauthorized(message: str = "authentication required") -> HttpError:
    return HttpError(
        401,
        message,
        "NoValidSession",
        {"WWW-Authenticate": 'Basic realm="Redfish", charset="UTF-8"'},
    )


def authenticate(tree: Tree, headers: Headers) -> Principal | None:
    """The principal of a request: a valid ``X-Auth-Token``, else valid Basic credentials."""
    with tree.site.lock:
        mgmt = state(tree)
        token = headers.get("X-Auth-Token")
        if token:
            session = mgmt.by_token(token)
            if session is None:
                return None
            account = mgmt.by_username(session.username)
            return Principal(account, session) if account else None
        auth = headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            username, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        account = mgmt.check_password(username, password)
        return Principal(account) if account else None


def needed_privilege(method: str, path: str, principal: Principal, body: dict) -> str:
    """The privilege an operation needs (a coarse reading of DSP8011's privilege map)."""
    if method in ("GET", "HEAD"):
        return "Login"
    if path.startswith(SESSIONS + "/") and method == "DELETE":
        own = principal.session is not None and path == f"{SESSIONS}/{principal.session.id}"
        return "Login" if own else "ConfigureManager"
    if path.startswith(ACCOUNT_SERVICE):
        own = path == f"{ACCOUNTS}/{principal.account.id}"
        if own and method == "PATCH" and set(body) <= {"Password", "@odata.etag"}:
            return "ConfigureSelf"
        return "ConfigureUsers"
    if path.startswith((SESSION_SERVICE, MANAGERS)):
        return "ConfigureManager"
    return "ConfigureComponents"


def authorize(tree: Tree, method: str, path: str, headers: Headers, body: dict) -> None:
    """Refuse a request its sender may not make: 401 (with ``WWW-Authenticate``) without valid
    credentials, 403 without the privilege."""
    path = path.rstrip("/") or "/"
    if path in OPEN_PATHS and method in ("GET", "HEAD"):
        return
    if path in (SESSIONS, f"{SESSIONS}/Members") and method == "POST":
        return  # a log-in carries its credentials in the body
    principal = authenticate(tree, headers)
    if principal is None:
        raise _unauthorized()
    privilege = needed_privilege(method, path, principal, body)
    if privilege not in principal.privileges:
        raise HttpError(
            403,
            f"role {principal.account.role} lacks the {privilege} privilege",
            "InsufficientPrivilege",
        )


# --- PATCH helpers ---------------------------------------------------------------------------


def patch_reply(
    body: dict, unknown: list[str], read_only: list[str], applied: bool
) -> tuple[int, dict]:
    """DSP0266's PATCH answers: 400 naming the properties when nothing could be applied, else
    200 with the resource and a message for each property left alone."""
    problems = [
        (p, "PropertyUnknown", f"The property {p} is not in the list of valid properties.")
        for p in unknown
    ] + [
        (p, "PropertyNotWritable", f"The property {p} is a read only property.") for p in read_only
    ]
    infos = [
        {
            "MessageId": message_id(key),
            "Message": text,
            "MessageArgs": [prop],
            "MessageSeverity": "Warning",
            "RelatedProperties": [f"#/{prop}"],
            "Resolution": "Remove the property from the request body and resubmit the request.",
        }
        for prop, key, text in problems
    ]
    if not applied:
        if not problems:
            raise HttpError(400, "the request changes nothing", "NoOperation")
        raise PatchRefused(infos)
    if infos:
        body = {**body, "@Message.ExtendedInfo": infos}
    return 200, body


class PatchRefused(HttpError):
    """A PATCH of only unknown or read-only properties: 400 with one message per property."""

    def __init__(self, infos: list[dict]):
        names = ", ".join(i["MessageArgs"][0] for i in infos)
        key = infos[0]["MessageId"].rsplit(".", 1)[-1]
        super().__init__(400, f"cannot change {names}", key, extended=infos)


def _props(body: dict) -> dict:
    """The body without OData annotations (``@odata.id``, ``@odata.etag``...)."""
    return {k: v for k, v in body.items() if not k.startswith("@")}


def patch_array(current: list, patch: list) -> list:
    """DSP0266 array PATCH: ``null`` removes an element, ``{}`` leaves it, a value replaces it,
    and elements past the patch's end are removed."""
    result: list = []
    for index, item in enumerate(patch):
        if item is None:
            continue
        if item == {}:
            if index < len(current):
                result.append(current[index])
            continue
        result.append(item)
    return result


# --- the service module ----------------------------------------------------------------------


class ManagementService:
    """SessionService, AccountService and Managers, for every device kind."""

    def attach(self, tree: Tree) -> None:
        mgmt = state(tree)
        tree.site.listeners.append(mgmt.record)

    def types(self, tree: Tree) -> list[str]:
        """Types of members that may not exist when ``$metadata`` is read."""
        return [
            "#Session.v1_8_0.Session",
            "#ManagerAccount.v1_14_1.ManagerAccount",
            "#LogEntry.v1_21_0.LogEntry",
        ]

    def root_links(self, tree: Tree) -> dict[str, str]:
        return {
            "SessionService": SESSION_SERVICE,
            "AccountService": ACCOUNT_SERVICE,
            "Managers": MANAGERS,
        }

    def allow(self, tree: Tree, path: str) -> list[str] | None:
        mgmt = state(tree)
        if path in (SESSIONS, f"{SESSIONS}/Members", ACCOUNTS):
            return ["GET", "HEAD", "POST"]
        if path.startswith(SESSIONS + "/") and path.rsplit("/", 1)[-1] in mgmt.sessions:
            return ["GET", "HEAD", "DELETE"]
        if path.startswith(ACCOUNTS + "/") and path.rsplit("/", 1)[-1] in mgmt.accounts:
            return ["GET", "HEAD", "PATCH", "DELETE"]
        if path in (SESSION_SERVICE, NETWORK_PROTOCOL, ACCOUNT_SERVICE):
            return ["GET", "HEAD", "PATCH"]
        if path in (CLEAR_LOG, MANAGER_RESET):
            return ["POST"]
        return None

    # --- GET ---------------------------------------------------------------------------------

    def resource(self, tree: Tree, path: str) -> dict | None:
        if path.startswith(SESSION_SERVICE):
            return self.session_resource(tree, path)
        if path.startswith(ACCOUNT_SERVICE):
            return self.account_resource(tree, path)
        if path.startswith(MANAGERS):
            return self.manager_resource(tree, path)
        return None

    def session_resource(self, tree: Tree, path: str) -> dict | None:
        mgmt = state(tree)
        mgmt.expire()
        if path == SESSION_SERVICE:
            return resource(
                path,
                "SessionService.v1_2_0.SessionService",
                "SessionService",
                "Session Service",
                ServiceEnabled=True,
                SessionTimeout=mgmt.session_timeout,
                Status=status(),
                Sessions=link(SESSIONS),
            )
        if path in (SESSIONS, f"{SESSIONS}/Members"):
            return collection(
                SESSIONS,
                "SessionCollection",
                "Sessions",
                [f"{SESSIONS}/{s}" for s in mgmt.sessions],
            )
        session = mgmt.sessions.get(path.rsplit("/", 1)[-1])
        if session is None or path != f"{SESSIONS}/{session.id}":
            return None
        return resource(
            path,
            "Session.v1_8_0.Session",
            session.id,
            f"Session {session.id}",
            UserName=session.username,
            Password=None,
            CreatedTime=session.created,
            SessionType="Redfish",
        )

    def account_resource(self, tree: Tree, path: str) -> dict | None:
        mgmt = state(tree)
        mgmt.ensure_admin()
        if path == ACCOUNT_SERVICE:
            return resource(
                path,
                "AccountService.v1_18_1.AccountService",
                "AccountService",
                "Account Service",
                ServiceEnabled=True,
                Status=status(),
                MinPasswordLength=MIN_PASSWORD,
                MaxPasswordLength=MAX_PASSWORD,
                AuthFailureLoggingThreshold=3,
                AccountLockoutThreshold=0,
                LocalAccountAuth="Enabled",
                Accounts=link(ACCOUNTS),
                Roles=link(ROLES),
            )
        if path == ACCOUNTS:
            return collection(
                path, "ManagerAccountCollection", "Accounts", [f"{path}/{a}" for a in mgmt.accounts]
            )
        if path == ROLES:
            return collection(
                path, "RoleCollection", "Roles", [f"{path}/{r}" for r in ROLE_PRIVILEGES]
            )
        if path.startswith(ROLES + "/"):
            role = path.rsplit("/", 1)[-1]
            if role not in ROLE_PRIVILEGES or path != f"{ROLES}/{role}":
                return None
            return resource(
                path,
                "Role.v1_3_3.Role",
                role,
                "User Role",
                Description=f"{role} User Role",
                IsPredefined=True,
                RoleId=role,
                AssignedPrivileges=list(ROLE_PRIVILEGES[role]),
                OemPrivileges=[],
            )
        account = mgmt.accounts.get(path.rsplit("/", 1)[-1])
        if account is None or path != f"{ACCOUNTS}/{account.id}":
            return None
        return self.account_body(account)

    def account_body(self, account: Account) -> dict:
        return resource(
            f"{ACCOUNTS}/{account.id}",
            "ManagerAccount.v1_14_1.ManagerAccount",
            account.id,
            "User Account",
            Enabled=account.enabled,
            Password=None,
            UserName=account.username,
            RoleId=account.role,
            Locked=False,
            AccountTypes=["Redfish"],
            Links={"Role": link(f"{ROLES}/{account.role}")},
        )

    def manager_resource(self, tree: Tree, path: str) -> dict | None:
        mgmt = state(tree)
        if path == MANAGERS:
            return collection(path, "ManagerCollection", "Managers", [MANAGER])
        if path == MANAGER:
            systems = members_of(tree, f"{ROOT}/Systems")
            chassis = members_of(tree, f"{ROOT}/Chassis")
            links: dict[str, object] = {}
            if systems:
                links["ManagerForServers"] = [link(s) for s in systems]
            if chassis:
                links["ManagerForChassis"] = [link(c) for c in chassis]
            return resource(
                path,
                "Manager.v1_24_0.Manager",
                "BMC",
                f"Manager of {tree.name}",
                ManagerType="BMC" if systems else "ManagementController",
                Manufacturer=tree.flavour.manufacturer,
                Model=f"{tree.flavour.name} management controller",
                FirmwareVersion=manager_firmware(tree),
                UUID=tree.uuid,
                ServiceEntryPointUUID=tree.uuid,
                DateTime=now_iso().split(".")[0] + "+00:00",
                DateTimeLocalOffset="+00:00",
                PowerState="On",
                Status=status(),
                NetworkProtocol=link(NETWORK_PROTOCOL),
                LogServices=link(LOG_SERVICES),
                Links=links,
                Actions={
                    "#Manager.Reset": {
                        "target": MANAGER_RESET,
                        "ResetType@Redfish.AllowableValues": ["GracefulRestart", "ForceRestart"],
                    }
                },
            )
        if path == NETWORK_PROTOCOL:
            net = mgmt.network
            return resource(
                path,
                "ManagerNetworkProtocol.v1_12_0.ManagerNetworkProtocol",
                "NetworkProtocol",
                "Manager Network Protocol",
                HostName=net.host_name,
                Status=status(),
                HTTP={"ProtocolEnabled": net.http[0], "Port": net.http[1]},
                HTTPS={"ProtocolEnabled": net.https[0], "Port": net.https[1]},
                SSH={"ProtocolEnabled": net.ssh[0], "Port": net.ssh[1]},
                NTP={
                    "ProtocolEnabled": net.ntp_enabled,
                    "Port": 123,
                    "NTPServers": list(net.ntp_servers),
                },
            )
        if path == LOG_SERVICES:
            return collection(path, "LogServiceCollection", "Log Services", [EVENT_LOG])
        if path == EVENT_LOG:
            return resource(
                path,
                "LogService.v1_9_0.LogService",
                "EventLog",
                "Event Log",
                Description="Faults recorded by this device",
                ServiceEnabled=True,
                MaxNumberOfRecords=MAX_LOG_RECORDS,
                OverWritePolicy="WrapsWhenFull",
                LogEntryType="Event",
                DateTime=now_iso().split(".")[0] + "+00:00",
                DateTimeLocalOffset="+00:00",
                Status=status(),
                Entries=link(ENTRIES),
                Actions={"#LogService.ClearLog": {"target": CLEAR_LOG}},
            )
        if path == ENTRIES:
            # LogEntryCollection's Members are OData.AutoExpand: the entries themselves.
            body = collection(path, "LogEntryCollection", "Log Entries", [])
            body["Members"] = [self.entry_body(e) for e in mgmt.log]
            body["Members@odata.count"] = len(mgmt.log)
            return body
        if path.startswith(ENTRIES + "/"):
            key = path.rsplit("/", 1)[-1]
            entry = next((e for e in mgmt.log if str(e.id) == key), None)
            if entry is None or path != f"{ENTRIES}/{key}":
                return None
            return self.entry_body(entry)
        return None

    def entry_body(self, entry: LogEntry) -> dict:
        body = resource(
            f"{ENTRIES}/{entry.id}",
            "LogEntry.v1_21_0.LogEntry",
            str(entry.id),
            f"Log entry {entry.id}",
            EntryType="Event",
            Severity=entry.severity,
            Created=entry.created,
            Message=entry.message,
            MessageId=entry.message_id,
            MessageArgs=entry.args,
        )
        if entry.origin:
            body["Links"] = {"OriginOfCondition": link(entry.origin)}
        return body

    # --- POST --------------------------------------------------------------------------------

    def post(self, tree: Tree, path: str, body: dict) -> Reply | None:
        mgmt = state(tree)
        if path in (SESSIONS, f"{SESSIONS}/Members"):
            username, password = body.get("UserName"), body.get("Password")
            if not isinstance(username, str) or not isinstance(password, str):
                missing = "UserName" if not isinstance(username, str) else "Password"
                raise HttpError(400, f"The property {missing} is required.", "PropertyMissing")
            account = mgmt.check_password(username, password)
            if account is None:
                raise _unauthorized("invalid user name or password")
            session = mgmt.open_session(account)
            location = f"{SESSIONS}/{session.id}"
            body_out = self.session_resource(tree, location) or {}
            return 201, body_out, {"Location": location, "X-Auth-Token": session.token}
        if path == ACCOUNTS:
            return self.create_account(mgmt, body)
        if path == CLEAR_LOG:
            mgmt.log.clear()
            return 204, {}, {}
        if path == MANAGER_RESET:
            reset = body.get("ResetType", "GracefulRestart")
            if reset not in ("GracefulRestart", "ForceRestart"):
                raise HttpError(
                    400, f"ResetType {reset!r} is not supported", "ActionParameterNotSupported"
                )
            mgmt.sessions.clear()  # a manager restart ends every session, as on a real BMC
            return 204, {}, {}
        if path.startswith((SESSION_SERVICE, ACCOUNT_SERVICE, MANAGERS)):
            if self.resource(tree, path) is not None:
                raise HttpError(405, f"POST is not allowed on {path}", "OperationNotAllowed")
            raise HttpError(404, f"no action at {path}", "ResourceMissingAtURI")
        return None

    def create_account(self, mgmt: Management, body: dict) -> Reply:
        mgmt.ensure_admin()
        username, password = body.get("UserName"), body.get("Password")
        role = body.get("RoleId", "ReadOnly")
        for name, value in (("UserName", username), ("Password", password)):
            if not isinstance(value, str) or not value:
                raise HttpError(400, f"The property {name} is required.", "PropertyMissing")
        assert isinstance(username, str) and isinstance(password, str)
        if role not in ROLE_PRIVILEGES:
            raise HttpError(
                400,
                f"The value {role!r} for the property RoleId is not valid.",
                "PropertyValueNotInList",
            )
        if mgmt.by_username(username) is not None:
            raise HttpError(409, f"an account named {username} exists", "ResourceAlreadyExists")
        check_password_rules(password)
        unknown = [
            k for k in _props(body) if k not in ("UserName", "Password", "RoleId", "Enabled")
        ]
        if unknown:
            raise HttpError(400, f"The property {unknown[0]} is not known.", "PropertyUnknown")
        account = mgmt.add_account(username, password, role)
        if body.get("Enabled") is False:
            account.enabled = False
        location = f"{ACCOUNTS}/{account.id}"
        return 201, self.account_body(account), {"Location": location}

    # --- PATCH -------------------------------------------------------------------------------

    def patch(self, tree: Tree, path: str, body: dict) -> Reply | None:
        mgmt = state(tree)
        if path.startswith(ACCOUNTS + "/"):
            account = mgmt.accounts.get(path.rsplit("/", 1)[-1])
            if account is None or path != f"{ACCOUNTS}/{account.id}":
                raise HttpError(404, f"no resource at {path}")
            return self.patch_account(tree, mgmt, account, body)
        if path == SESSION_SERVICE:
            return self.patch_simple(tree, path, body, {"SessionTimeout": self._set_timeout(mgmt)})
        if path == ACCOUNT_SERVICE:
            return self.patch_simple(tree, path, body, {})
        if path == NETWORK_PROTOCOL:
            return self.patch_network(tree, mgmt, body)
        if path.startswith((SESSION_SERVICE, ACCOUNT_SERVICE, MANAGERS)):
            if self.resource(tree, path) is not None:
                raise HttpError(405, f"PATCH is not allowed on {path}", "OperationNotAllowed")
            raise HttpError(404, f"no resource at {path}")
        return None

    @staticmethod
    def _set_timeout(mgmt: Management) -> Callable[[object], None]:
        def apply(value: object) -> None:
            low, high = SESSION_TIMEOUT_RANGE
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise HttpError(
                    400,
                    f"The value {value!r} for the property SessionTimeout is not in {low}..{high}.",
                    "PropertyValueOutOfRange",
                )
            mgmt.session_timeout = value

        return apply

    def patch_simple(self, tree: Tree, path: str, body: dict, setters: dict) -> Reply:
        props = _props(body)
        current = self.resource(tree, path) or {}
        unknown = [k for k in props if k not in current]
        read_only = [k for k in props if k in current and k not in setters]
        for key, setter in setters.items():
            if key in props:
                setter(props[key])
        applied = any(k in setters for k in props)
        code, out = patch_reply(self.resource(tree, path) or {}, unknown, read_only, applied)
        return code, out, {}

    def patch_account(self, tree: Tree, mgmt: Management, account: Account, body: dict) -> Reply:
        props = _props(body)
        writable = {"Password", "RoleId", "Enabled", "UserName"}
        current = self.account_body(account)
        unknown = [k for k in props if k not in current]
        read_only = [k for k in props if k in current and k not in writable]
        if "RoleId" in props and props["RoleId"] not in ROLE_PRIVILEGES:
            raise HttpError(
                400,
                f"The value {props['RoleId']!r} for the property RoleId is not valid.",
                "PropertyValueNotInList",
            )
        if "Password" in props:
            if not isinstance(props["Password"], str):
                raise HttpError(
                    400, "The property Password must be a string.", "PropertyValueTypeError"
                )
            check_password_rules(props["Password"])
        if "UserName" in props:
            other = mgmt.by_username(str(props["UserName"]))
            if not isinstance(props["UserName"], str) or not props["UserName"]:
                raise HttpError(
                    400, "The property UserName must be a name.", "PropertyValueFormatError"
                )
            if other is not None and other is not account:
                raise HttpError(409, "an account of that name exists", "ResourceAlreadyExists")
        if "Enabled" in props and not isinstance(props["Enabled"], bool):
            raise HttpError(
                400, "The property Enabled must be a boolean.", "PropertyValueTypeError"
            )
        applied = False
        if "Password" in props:
            account.password, applied = props["Password"], True
        if "RoleId" in props:
            account.role, applied = props["RoleId"], True
        if "Enabled" in props:
            account.enabled, applied = props["Enabled"], True
        if "UserName" in props:
            account.username, applied = props["UserName"], True
        code, out = patch_reply(self.account_body(account), unknown, read_only, applied)
        return code, out, {}

    def patch_network(self, tree: Tree, mgmt: Management, body: dict) -> Reply:
        props = _props(body)
        net = mgmt.network
        current = self.resource(tree, NETWORK_PROTOCOL) or {}
        unknown = [k for k in props if k not in current]
        read_only = [k for k in props if k in ("Id", "Name", "Status", "FQDN")]
        applied = False
        if "HostName" in props:
            if not isinstance(props["HostName"], str):
                raise HttpError(
                    400, "The property HostName must be a string.", "PropertyValueTypeError"
                )
            net.host_name, applied = props["HostName"], True
        for name in ("HTTP", "HTTPS", "SSH"):
            if name not in props:
                continue
            value = props[name]
            if not isinstance(value, dict):
                raise HttpError(
                    400, f"The property {name} must be an object.", "PropertyValueTypeError"
                )
            enabled, port = getattr(net, name.lower())
            enabled = bool(value.get("ProtocolEnabled", enabled))
            port = value.get("Port", port)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise HttpError(
                    400, f"The property {name}/Port is out of range.", "PropertyValueOutOfRange"
                )
            setattr(net, name.lower(), (enabled, port))
            applied = True
        if "NTP" in props:
            ntp = props["NTP"]
            if not isinstance(ntp, dict):
                raise HttpError(
                    400, "The property NTP must be an object.", "PropertyValueTypeError"
                )
            if "ProtocolEnabled" in ntp:
                net.ntp_enabled = bool(ntp["ProtocolEnabled"])
            servers = ntp.get("NTPServers")
            if servers is not None:
                if not isinstance(servers, list):
                    raise HttpError(
                        400,
                        "The property NTP/NTPServers must be an array.",
                        "PropertyValueTypeError",
                    )
                net.ntp_servers = patch_array(net.ntp_servers, servers)
            applied = True
        code, out = patch_reply(
            self.resource(tree, NETWORK_PROTOCOL) or {}, unknown, read_only, applied
        )
        return code, out, {}

    # --- DELETE ------------------------------------------------------------------------------

    def delete(self, tree: Tree, path: str) -> Reply | None:
        mgmt = state(tree)
        if path.startswith(SESSIONS + "/"):
            sid = path.rsplit("/", 1)[-1]
            if sid not in mgmt.sessions or path != f"{SESSIONS}/{sid}":
                raise HttpError(404, f"no session at {path}")
            del mgmt.sessions[sid]
            return 204, {}, {}
        if path.startswith(ACCOUNTS + "/"):
            account = mgmt.accounts.get(path.rsplit("/", 1)[-1])
            if account is None or path != f"{ACCOUNTS}/{account.id}":
                raise HttpError(404, f"no resource at {path}")
            admins = [a for a in mgmt.accounts.values() if a.role == "Administrator"]
            if admins == [account]:
                raise HttpError(409, "the last administrator cannot be deleted", "ResourceInUse")
            del mgmt.accounts[account.id]
            for sid in [s.id for s in mgmt.sessions.values() if s.username == account.username]:
                del mgmt.sessions[sid]
            return 204, {}, {}
        if path.startswith((SESSION_SERVICE, ACCOUNT_SERVICE, MANAGERS)):
            if self.resource(tree, path) is not None:
                raise HttpError(405, f"{path} cannot be deleted", "OperationNotAllowed")
            raise HttpError(404, f"no resource at {path}")
        return None


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise HttpError(
            400,
            f"The password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long.",
            "PropertyValueFormatError",
        )


def manager_firmware(tree: Tree) -> str:
    """The management controller's own firmware (not the system's BIOS bank)."""
    return getattr(tree, "manager_firmware_version", None) or "1.12.3"


SERVICES.append(ManagementService())
