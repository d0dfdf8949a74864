"""The TaskService and task monitors: long operations as DSP0266 "Asynchronous operations" runs
them.

- The action answers ``202 Accepted`` with ``Location`` = the task *monitor* (where it lives is
  the vendor's choice: ``Flavour.monitor_path``), ``Retry-After``, and the Task resource.
- ``GET`` on the monitor answers ``202`` (with ``Retry-After``) while the operation runs, and
  once it is done the operation's own response: ``200`` with its body (``204`` when it has
  none). An operation that failed answers what it would have answered synchronously: an error
  response (DSP0266 "Error responses": ``500`` for a failure the client did not cause, with
  ``@Message.ExtendedInfo``), never a success.
- ``DELETE`` on the monitor cancels an operation that can be stopped (burn-in; a flash half
  written cannot): the Task ends ``Cancelled`` and the monitor is gone (404).
- The Task resource (``/redfish/v1/TaskService/Tasks/{id}``) stays readable with ``TaskState``,
  ``TaskStatus``, ``PercentComplete``, ``StartTime``/``EndTime`` and ``Messages`` from the
  TaskEvent registry; an operation's OEM result (burn-in) is its ``Oem``.
"""

from __future__ import annotations

import math

from factory.simulator.devices import Task
from factory.simulator.redfish.common import (
    ROOT,
    SERVICES,
    Answer,
    HttpError,
    Reply,
    Stream,
    Tree,
    collection,
    link,
    now_iso,
    resource,
    service,
)
from factory.simulator.redfish.registries import BASE_REGISTRY, TASK_EVENT
from factory.wire import OemAction

TASK_SERVICE = f"{ROOT}/TaskService"
TASKS = f"{TASK_SERVICE}/Tasks"
#: Operations that may be stopped part way (DELETE on their monitor).
CANCELLABLE = frozenset({OemAction.BURN_IN.value})
MAX_RETRY_AFTER_S = 5


def tasks_of(tree: Tree) -> dict[str, Task] | None:
    """The device's tasks (a BMC's), or None for a device that runs none."""
    device = getattr(tree, "bmc", None)
    return getattr(device, "tasks", None)


def task_path(task: Task) -> str:
    return f"{TASKS}/{task.id}"


def monitor_path(tree: Tree, task: Task) -> str:
    return tree.flavour.monitor_path(ROOT, task.id)


def state_of(task: Task) -> tuple[str, str]:
    """TaskState and TaskStatus."""
    if not task.finished:
        return "Running", "OK"
    if task.cancelled:
        return "Cancelled", "Warning"
    return ("Completed", "OK") if task.ok else ("Exception", "Critical")


def messages_of(task: Task) -> list[dict]:
    """What happened to the task, in TaskEvent (and Base) registry messages."""
    messages = [TASK_EVENT.record("TaskStarted", task.id)]
    if not task.finished:
        return messages
    if task.cancelled:
        messages.append(TASK_EVENT.record("TaskCancelled", task.id))
    elif task.ok:
        messages.append(TASK_EVENT.record("TaskCompletedOK", task.id))
    else:
        messages.append(TASK_EVENT.record("TaskAborted", task.id))
        # GeneralError carries its cause in Resolution (as DMTF's Base registry asks).
        messages.append(BASE_REGISTRY.record("GeneralError", Resolution=task.message))
    return messages


def percent_complete(tree: Tree, task: Task) -> int:
    if task.finished:
        return 100
    span = task.done_at - task.begun_s
    if span <= 0:
        return 99
    return max(0, min(99, int(100 * (tree.site.now - task.begun_s) / span)))


def task_body(tree: Tree, task: Task) -> dict:
    state, health = state_of(task)
    body = resource(
        task_path(task),
        "Task.v1_7_4.Task",
        task.id,
        task.name,
        TaskState=state,
        TaskStatus=health,
        PercentComplete=percent_complete(tree, task),
        StartTime=task.started_at,
        TaskMonitor=monitor_path(tree, task),
        Messages=messages_of(task),
    )
    if task.finished:
        body["EndTime"] = task.ended_at or now_iso()
    if task.finished and task.ok and task.result:
        body["Oem"] = {tree.flavour.oem: task.result}
    return body


def retry_after(tree: Tree, task: Task) -> str:
    """Seconds until the task should be done (at least 1, at most a few: poll again soon)."""
    left = task.done_at - tree.site.now
    return str(max(1, min(MAX_RETRY_AFTER_S, math.ceil(left))))


def accepted(tree: Tree, task: Task) -> Reply:
    """The 202 a long action answers: the monitor in ``Location``, the Task in the body."""
    task.begun_s = tree.site.now
    task.cancellable = task.name in CANCELLABLE
    headers = {"Location": monitor_path(tree, task), "Retry-After": retry_after(tree, task)}
    return 202, task_body(tree, task), headers


def final_answer(tree: Tree, task: Task) -> dict:
    """What the monitor answers once the operation is over (DSP0266: the operation's response).

    Success: 200 with the operation's result (its messages; its OEM result where it has one).
    Failure: the operation's error response, 500 (DSP0266 "Error responses": a failure on the
    service's side, not the client's), whose ``@Message.ExtendedInfo`` says why.
    Cancelled: the monitor was deleted with it, 404.
    """
    infos = messages_of(task)[1:]
    if task.cancelled:
        gone = BASE_REGISTRY.record("ResourceMissingAtURI", monitor_path(tree, task))
        raise HttpError(404, gone["Message"], gone["MessageId"], extended=[*infos, gone])
    if not task.ok:
        cause = BASE_REGISTRY.record("InternalError")
        raise HttpError(
            500, f"{task.name} failed: {task.message}", cause["MessageId"], extended=infos
        )
    body: dict = {"@Message.ExtendedInfo": [BASE_REGISTRY.record("Success"), *infos]}
    if task.result:
        body["Oem"] = {tree.flavour.oem: task.result}
    return body


class TaskService:
    """``/redfish/v1/TaskService`` and the task monitors, on devices that run tasks (BMCs)."""

    def root_links(self, tree: Tree) -> dict[str, str]:
        return {"Tasks": TASK_SERVICE} if tasks_of(tree) is not None else {}

    def _monitored(self, tree: Tree, path: str) -> Task | None:
        tasks = tasks_of(tree)
        if not tasks:
            return None
        return next((t for t in tasks.values() if monitor_path(tree, t) == path), None)

    def resource(self, tree: Tree, path: str) -> dict | Stream | None:
        tasks = tasks_of(tree)
        if tasks is None:
            return None
        monitored = self._monitored(tree, path)
        if monitored is not None:
            return self.monitor(tree, monitored)
        if path == TASK_SERVICE:
            return service(
                path,
                "TaskService.v1_3_0.TaskService",
                "Task Service",
                Tasks=link(TASKS),
                DateTime=now_iso(),
                CompletedTaskOverWritePolicy="Oldest",
                LifeCycleEventOnTaskStateChange=False,
            )
        if path == TASKS:
            return collection(
                path, "TaskCollection", "Tasks", [task_path(t) for t in tasks.values()]
            )
        if path.startswith(TASKS + "/"):
            task = tasks.get(path[len(TASKS) + 1 :])
            return task_body(tree, task) if task is not None else None
        return None

    def monitor(self, tree: Tree, task: Task) -> dict:
        if not task.finished:
            headers = {"Retry-After": retry_after(tree, task), "Location": monitor_path(tree, task)}
            return Answer(202, task_body(tree, task), headers)
        return final_answer(tree, task)

    def allow(self, tree: Tree, path: str) -> list[str] | None:
        task = self._monitored(tree, path)
        if task is not None:
            running = not task.finished and task.cancellable
            return ["GET", "HEAD", "DELETE"] if running else ["GET", "HEAD"]
        return None

    def post(self, tree: Tree, path: str, body: dict) -> Reply | None:
        return None

    def delete(self, tree: Tree, path: str) -> Reply | None:
        """Cancel: only a running task that allows it (else the server's 405)."""
        task = self._monitored(tree, path)
        if task is None or not task.cancel():
            return None
        return 204, {}, {}


SERVICES.append(TaskService())
