"""The message registries a device serves at ``/redfish/v1/Registries`` (DSP0266 "Message
registries"; DMTF's DSP8011): every ``MessageId`` the simulator writes in an error, a Task or an
Event resolves here to its text, severity and arguments.

Only the subset the simulator uses is written, with DMTF's own keys, texts and versions: a
client that knows ``Base.1.19.0`` finds the same message under the same key.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.simulator.faults import Fault
from factory.simulator.redfish.common import (
    ROOT,
    SERVICES,
    Reply,
    Stream,
    Tree,
    collection,
    resource,
)
from factory.wire import EventKind

BASE = ROOT + "/Registries"


@dataclass(frozen=True)
class Message:
    severity: str  # Resource.Health: OK, Warning, Critical
    text: str  # with %1, %2... for the arguments
    params: tuple[str, ...] = ()  # ParamTypes: "string" or "number"
    resolution: str = "None."
    description: str = ""


@dataclass(frozen=True)
class Registry:
    prefix: str
    version: str  # major.minor.errata; MessageIds carry major.minor
    name: str
    description: str
    messages: dict[str, Message]

    @property
    def id(self) -> str:
        return f"{self.prefix}.{self.version}"

    def message_id(self, key: str) -> str:
        """``Prefix.Major.Minor.Key``, as DSP0266 writes a MessageId."""
        if key not in self.messages:
            raise KeyError(f"{self.prefix} has no message {key}")
        major, minor, _ = self.version.split(".")
        return f"{self.prefix}.{major}.{minor}.{key}"

    def record(self, key: str, *args: object, **fields: object) -> dict:
        """A Message object (Message.v1_x): id, text with its arguments filled in, severity."""
        msg = self.messages[key]
        text = msg.text
        # Highest index first, so %1 does not eat the start of %10.
        for index in range(len(args), 0, -1):
            text = text.replace(f"%{index}", str(args[index - 1]))
        body: dict = {
            "MessageId": self.message_id(key),
            "Message": text,
            "MessageSeverity": msg.severity,
            "Severity": msg.severity,
            "Resolution": msg.resolution,
        }
        if args:
            body["MessageArgs"] = [str(a) for a in args]
        body.update(fields)
        return body


_S, _N = "string", "number"

BASE_REGISTRY = Registry(
    "Base",
    "1.19.0",
    "Base Message Registry",
    "This registry defines the base messages for Redfish.",
    {
        "Success": Message("OK", "The request completed successfully."),
        "Created": Message("OK", "The resource was created successfully."),
        "NoOperation": Message(
            "Warning",
            "The request body submitted contain no data to act upon and no changes to the "
            "resource took place.",
            resolution="Add properties in the JSON object and resubmit the request.",
        ),
        "GeneralError": Message(
            "Critical",
            "A general error has occurred.  See Resolution for information on how to resolve "
            "the error, or @Message.ExtendedInfo if Resolution is not provided.",
        ),
        "InternalError": Message(
            "Critical",
            "The request failed due to an internal service error.  The service is still "
            "operational.",
            resolution="Resubmit the request.  If the problem persists, consider resetting the "
            "service.",
        ),
        "MalformedJSON": Message(
            "Critical",
            "The request body submitted was malformed JSON and could not be parsed by the "
            "receiving service.",
            resolution="Ensure that the request body is valid JSON and resubmit the request.",
        ),
        "ResourceMissingAtURI": Message(
            "Critical",
            "The resource at the URI '%1' was not found.",
            (_S,),
            "Place a valid resource at the URI or correct the URI and resubmit the request.",
        ),
        "ResourceNotFound": Message(
            "Critical",
            "The requested resource of type '%1' named '%2' was not found.",
            (_S, _S),
            "Provide a valid resource identifier and resubmit the request.",
        ),
        "OperationNotAllowed": Message(
            "Critical",
            "The HTTP method is not allowed on this resource.",
            resolution="None.",
        ),
        "ActionNotSupported": Message(
            "Critical",
            "The action '%1' is not supported by the resource.",
            (_S,),
            "The action supplied cannot be resubmitted to the implementation.  Perhaps the "
            "action was invalid, the wrong resource was the target or the implementation "
            "documentation may be of assistance.",
        ),
        "ActionParameterMissing": Message(
            "Critical",
            "The action '%1' requires the parameter '%2' to be present in the request body.",
            (_S, _S),
            "Supply the action with the required parameter in the request body when the "
            "request is resubmitted.",
        ),
        "ActionParameterValueNotInList": Message(
            "Warning",
            "The value '%1' for the parameter '%2' in the action '%3' is not in the list of "
            "acceptable values.",
            (_S, _S, _S),
            "Choose a value from the enumeration list that the implementation can support and "
            "resubmit the request if the operation failed.",
        ),
        "PropertyMissing": Message(
            "Warning",
            "The property '%1' is a required property and must be included in the request.",
            (_S,),
            "Ensure that the property is in the request body and has a valid value and "
            "resubmit the request if the operation failed.",
        ),
        "PropertyUnknown": Message(
            "Warning",
            "The property '%1' is not in the list of valid properties for the resource.",
            (_S,),
            "Remove the unknown property from the request body and resubmit the request if the "
            "operation failed.",
        ),
        "PropertyNotWritable": Message(
            "Warning",
            "The property '%1' is a read-only property and cannot be assigned a value.",
            (_S,),
            "Remove the property from the request body and resubmit the request if the "
            "operation failed.",
        ),
        "PropertyValueTypeError": Message(
            "Warning",
            "The value '%1' for the property '%2' is not a type that the property can accept.",
            (_S, _S),
            "Correct the value for the property in the request body and resubmit the request "
            "if the operation failed.",
        ),
        "PropertyValueFormatError": Message(
            "Warning",
            "The value '%1' for the property '%2' is not a format that the property can accept.",
            (_S, _S),
            "Correct the value for the property in the request body and resubmit the request "
            "if the operation failed.",
        ),
        "PropertyValueNotInList": Message(
            "Warning",
            "The value '%1' for the property '%2' is not in the list of acceptable values.",
            (_S, _S),
            "Choose a value from the enumeration list that the implementation can support and "
            "resubmit the request if the operation failed.",
        ),
        "QueryNotSupported": Message(
            "Warning",
            "Querying is not supported by the implementation.",
            resolution="Remove the query parameters and resubmit the request if the operation "
            "failed.",
        ),
        "QueryParameterValueFormatError": Message(
            "Warning",
            "The value '%1' for the parameter '%2' is not a format that the parameter can accept.",
            (_S, _S),
            "Correct the value for the query parameter in the request and resubmit the request "
            "if the operation failed.",
        ),
        "ResourceInUse": Message(
            "Warning",
            "The change to the requested resource failed because the resource is in use or in "
            "transition.",
            resolution="Remove the condition and resubmit the request if the operation failed.",
        ),
        "ResourceCannotBeDeleted": Message(
            "Critical",
            "The delete request failed because the resource requested cannot be deleted.",
            resolution="Do not attempt to delete a non-deletable resource.",
        ),
        "PreconditionFailed": Message(
            "Critical",
            "The ETag supplied did not match the current ETag of the resource.",
            resolution="Try the operation again using the appropriate ETag.",
        ),
        "PreconditionRequired": Message(
            "Critical",
            "A precondition header or annotation is required to change this resource.",
            resolution="Try the operation again using an If-Match or If-None-Match header and "
            "appropriate ETag.",
        ),
        "NoValidSession": Message(
            "Critical",
            "There is no valid session established with the implementation.",
            resolution="Establish a session before attempting any operations.",
        ),
        "InsufficientPrivilege": Message(
            "Critical",
            "There are insufficient privileges for the account or credentials associated with "
            "the current session to perform the requested operation.",
            resolution="Either abandon the operation or change the associated access rights "
            "and resubmit the request if the operation failed.",
        ),
        "ResourceAtUriUnauthorized": Message(
            "Critical",
            "While accessing the resource at '%1', the service received an authorization error "
            "'%2'.",
            (_S, _S),
            "Ensure that the appropriate access is provided for the service in order for it to "
            "access the URI.",
        ),
        "SessionLimitExceeded": Message(
            "Critical",
            "The session establishment failed due to the number of simultaneous sessions "
            "exceeding the limit of the implementation.",
            resolution="Reduce the number of other sessions before trying to establish the "
            "session or increase the limit of simultaneous sessions, if supported.",
        ),
        "AccountModified": Message("OK", "The account was successfully modified."),
        "AccountRemoved": Message("OK", "The account was successfully removed."),
        "PasswordChangeRequired": Message(
            "Critical",
            "The password provided for this account must be changed before access is granted.  "
            "PATCH the Password property for this account located at the target URI '%1' to "
            "complete this process.",
            (_S,),
            "Change the password for this account using a PATCH to the Password property at "
            "the URI provided.",
        ),
        "EventSubscriptionLimitExceeded": Message(
            "Critical",
            "The event subscription failed due to the number of simultaneous subscriptions "
            "exceeding the limit of the implementation.",
            resolution="Reduce the number of other subscriptions before trying to establish "
            "the event subscription or increase the limit of simultaneous subscriptions, if "
            "supported.",
        ),
        "SubscriptionTerminated": Message(
            "OK",
            "The event subscription has been terminated.",
            resolution="No resolution is required.",
        ),
        "EventBufferExceeded": Message(
            "Warning",
            "Undelivered events may have been lost due to exceeding the event buffer.",
            resolution="Ensure that the event receiver is available to receive events.",
        ),
        "PropertyValueModified": Message(
            "Warning",
            "The property '%1' was assigned the value '%2' due to modification by the service.",
            (_S, _S),
            "No resolution is required.",
        ),
    },
)

RESOURCE_EVENT = Registry(
    "ResourceEvent",
    "1.4.0",
    "Resource Event Message Registry",
    "This registry defines the messages to use for resource events.",
    {
        "ResourceStatusChangedOK": Message(
            "OK",
            "The health of resource '%1' has changed to %2.",
            (_S, _S),
            "None.",
            "Indicates that the health of a resource has changed to OK.",
        ),
        "ResourceStatusChangedWarning": Message(
            "Warning",
            "The health of resource '%1' has changed to %2.",
            (_S, _S),
            "None.",
            "Indicates that the health of a resource has changed to Warning.",
        ),
        "ResourceStatusChangedCritical": Message(
            "Critical",
            "The health of resource '%1' has changed to %2.",
            (_S, _S),
            "None.",
            "Indicates that the health of a resource has changed to Critical.",
        ),
        "ResourceErrorsDetected": Message(
            "Warning",
            "The resource property %1 has detected errors of type '%2'.",
            (_S, _S),
            "Resolution dependent upon error type.",
            "Indicates that a specified resource property has detected errors.",
        ),
        "ResourceErrorsCorrected": Message(
            "OK",
            "The resource property %1 has corrected errors of type '%2'.",
            (_S, _S),
            "None.",
            "Indicates that a specified resource property has corrected errors.",
        ),
        "ResourceErrorThresholdExceeded": Message(
            "Critical",
            "The resource property %1 has exceeded error threshold of value %2.",
            (_S, _N),
            "None.",
            "Indicates that a specified resource property has exceeded its error threshold.",
        ),
        "ResourceErrorThresholdCleared": Message(
            "OK",
            "The resource property %1 has cleared the error threshold of value %2.",
            (_S, _N),
            "None.",
            "Indicates that a specified resource property has cleared its error threshold.",
        ),
        "ResourceWarningThresholdExceeded": Message(
            "Warning",
            "The resource property %1 has exceeded its warning threshold of value %2.",
            (_S, _N),
            "None.",
            "Indicates that a specified resource property has exceeded its warning threshold.",
        ),
        "ResourceChanged": Message(
            "OK",
            "One or more resource properties have changed.",
            description="Indicates that one or more resource properties have changed.",
        ),
        "ResourceCreated": Message(
            "OK",
            "The resource has been created successfully.",
            description="Indicates that all conditions of a successful creation operation have "
            "been met.",
        ),
        "ResourceRemoved": Message(
            "OK",
            "The resource has been removed successfully.",
            description="Indicates that all conditions of a successful remove operation have "
            "been met.",
        ),
    },
)

TASK_EVENT = Registry(
    "TaskEvent",
    "1.0.3",
    "Task Event Message Registry",
    "This registry defines the messages for task related events.",
    {
        "TaskStarted": Message(
            "OK", "The task with Id '%1' has started.", (_S,), "None.", "A task has started."
        ),
        "TaskCompletedOK": Message(
            "OK",
            "The task with Id '%1' has completed.",
            (_S,),
            "None.",
            "A task has completed.",
        ),
        "TaskCompletedWarning": Message(
            "Warning",
            "The task with Id '%1' has completed with warnings.",
            (_S,),
            "None.",
            "A task has completed with warnings.",
        ),
        "TaskAborted": Message(
            "Critical",
            "The task with Id '%1' has been aborted.",
            (_S,),
            "None.",
            "A task has completed with errors.",
        ),
        "TaskCancelled": Message(
            "Warning",
            "The task with Id '%1' has been cancelled.",
            (_S,),
            "None.",
            "A task has been cancelled.",
        ),
        "TaskRemoved": Message(
            "Warning",
            "The task with Id '%1' has been removed.",
            (_S,),
            "None.",
            "A task has been removed.",
        ),
        "TaskProgressChanged": Message(
            "OK",
            "The task with Id '%1' has changed to progress %2 percent complete.",
            (_S, _N),
            "None.",
            "A task has changed progress.",
        ),
    },
)

REGISTRIES: dict[str, Registry] = {r.prefix: r for r in (BASE_REGISTRY, RESOURCE_EVENT, TASK_EVENT)}

#: Each fault kind in ResourceEvent terms: the message and the health its resource goes to.
#: DMTF's ResourceEvent registry has no leak message: a leak is its detector gone Critical.
FAULT_MESSAGES: dict[str, tuple[str, str]] = {
    EventKind.CHIP_FAILURE: ("ResourceStatusChangedCritical", "Critical"),
    # Uncorrectable errors past what the memory survives: the registry's Critical message.
    EventKind.HBM_FAILURE: ("ResourceErrorThresholdExceeded", "Critical"),
    # Correctable errors, many of them: detected (Warning), not yet past a threshold.
    EventKind.ECC_STORM: ("ResourceErrorsDetected", "Warning"),
    EventKind.LINK_FLAP: ("ResourceStatusChangedWarning", "Warning"),
    EventKind.LINK_DOWN: ("ResourceStatusChangedCritical", "Critical"),
    EventKind.FEED_LOSS: ("ResourceStatusChangedCritical", "Critical"),
    EventKind.COOLANT_EXCURSION: ("ResourceStatusChangedWarning", "Warning"),
    EventKind.LEAK: ("ResourceStatusChangedCritical", "Critical"),
}


def fault_message(fault: Fault, origin: str) -> dict:
    """A fault as a ResourceEvent Message (MessageId, Message, MessageArgs, MessageSeverity)
    about ``origin``: the one wording of a fault, for the event log's LogEntry and the
    EventService's Event alike, each argument the registry's own."""
    key, health = FAULT_MESSAGES.get(fault.kind, ("ResourceStatusChangedWarning", "Warning"))
    if key == "ResourceErrorThresholdExceeded":
        args: tuple[object, ...] = ("UncorrectableECCErrorCount", 0)
    elif key == "ResourceErrorsDetected":
        args = ("CorrectableECCErrorCount", "CorrectableECC")
    else:
        args = (origin, health)
    record = RESOURCE_EVENT.record(key, *args)
    record["MessageSeverity"] = record["Severity"] = health
    return record


def registry_body(registry: Registry) -> dict:
    """The MessageRegistry resource (MessageRegistry.v1_7_0)."""
    return resource(
        f"{BASE}/{registry.id}/{registry.id}",
        "MessageRegistry.v1_7_0.MessageRegistry",
        registry.id,
        registry.name,
        Description=registry.description,
        Language="en",
        RegistryPrefix=registry.prefix,
        RegistryVersion=registry.version,
        OwningEntity="DMTF",
        Messages={
            key: {
                "Description": m.description or m.text,
                "Message": m.text,
                "MessageSeverity": m.severity,
                "Severity": m.severity,
                "NumberOfArgs": len(m.params),
                **({"ParamTypes": list(m.params)} if m.params else {}),
                "Resolution": m.resolution,
            }
            for key, m in registry.messages.items()
        },
    )


def file_body(registry: Registry) -> dict:
    """The MessageRegistryFile: where the registry itself is, here and at DMTF."""
    path = f"{BASE}/{registry.id}"
    return resource(
        path,
        "MessageRegistryFile.v1_1_5.MessageRegistryFile",
        registry.id,
        f"{registry.name} File",
        Description=f"{registry.name} file locations",
        Languages=["en"],
        Registry=f"{registry.prefix}.{registry.version.rsplit('.', 1)[0]}",
        Location=[
            {
                "Language": "en",
                "Uri": f"{path}/{registry.id}",
                "PublicationUri": f"https://redfish.dmtf.org/registries/{registry.id}.json",
            }
        ],
    )


class RegistriesService:
    """``/redfish/v1/Registries``: the same registries on every device kind."""

    def root_links(self, tree: Tree) -> dict[str, str]:
        return {"Registries": BASE}

    def resource(self, tree: Tree, path: str) -> dict | Stream | None:
        if not path.startswith(BASE):
            return None
        by_id = {r.id: r for r in REGISTRIES.values()}
        if path == BASE:
            return collection(
                path,
                "MessageRegistryFileCollection",
                "Registry File Collection",
                [f"{BASE}/{id_}" for id_ in by_id],
            )
        rest = path[len(BASE) + 1 :].split("/")
        registry = by_id.get(rest[0])
        if registry is None:
            return None
        if len(rest) == 1:
            return file_body(registry)
        if rest[1:] == [registry.id]:
            return registry_body(registry)
        return None

    def post(self, tree: Tree, path: str, body: dict) -> Reply | None:
        return None

    def delete(self, tree: Tree, path: str) -> Reply | None:
        return None


SERVICES.append(RegistriesService())
