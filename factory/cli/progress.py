"""A workflow's progress as a person follows it: a live bar in a terminal, a line per change
elsewhere (a log, CI). The summaries are pure; the views only print them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

SUCCEEDED = "succeeded"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def step_counts(workflow: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(finished, total, failed)`` steps. A succeeded workflow has finished all its steps:
    those it never needed (a rollback after a good flash) are skipped, not pending."""
    steps = (workflow.get("progress") or {}).get("steps") or {}
    total = int(steps.get("total") or 0)
    done, failed = int(steps.get("done") or 0), int(steps.get("failed") or 0)
    if workflow.get("state") == SUCCEEDED:
        return total, total, failed
    return min(done + failed, total), total, failed


def summary(workflow: Mapping[str, Any]) -> str:
    """``workflow 12 (upgrade) running: 4/12 steps, servers 1/3 finished (33.3%)``."""
    finished, total, failed = step_counts(workflow)
    progress = workflow.get("progress") or {}
    targets = int(progress.get("targets") or workflow.get("target_count") or 0)
    by_state = progress.get("by_state") or {}
    servers_done = sum(int(n) for s, n in by_state.items() if s not in ("pending", "running"))
    head = f"workflow {workflow.get('id')} ({workflow.get('kind')}) {workflow.get('state')}:"
    parts = [f"{finished}/{total} steps"]
    if failed:
        parts.append(f"{failed} failed")
    servers = f"servers {servers_done}/{targets} finished"
    if progress.get("percent") is not None:
        servers += f" ({progress['percent']}%)"
    parts.append(servers)
    text = f"{head} {', '.join(parts)}"
    reason = workflow.get("state_reason")
    return f"{text} — {reason}" if reason else text


def exit_code(state: str) -> int:
    """0 for a workflow that succeeded; 1 for one that failed or was cancelled."""
    return 0 if state == SUCCEEDED else 1


class View(Protocol):
    def update(self, workflow: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class Lines:
    """A line whenever something changes: for logs, pipes and CI."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = ""

    def update(self, workflow: Mapping[str, Any]) -> None:
        line = summary(workflow)
        if line != self.last:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last = line

    def close(self) -> None:
        pass


class Bar:
    """A live progress bar of steps finished out of all, with the state and servers beside."""

    def __init__(self, stream: TextIO) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[title]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        self.task: TaskID | None = None
        self.progress.start()

    def update(self, workflow: Mapping[str, Any]) -> None:
        finished, total, failed = step_counts(workflow)
        title = f"workflow {workflow.get('id')} {workflow.get('kind')} {workflow.get('state')}"
        by_state = (workflow.get("progress") or {}).get("by_state") or {}
        detail = " ".join(f"{n} {s}" for s, n in sorted(by_state.items()))
        if failed:
            detail += f" · {failed} steps failed"
        if self.task is None:
            self.task = self.progress.add_task("", total=total, title=title, detail=detail)
        self.progress.update(self.task, completed=finished, total=total, title=title, detail=detail)

    def close(self) -> None:
        self.progress.stop()


def view_for(stream: TextIO) -> View:
    return Bar(stream) if stream.isatty() else Lines(stream)
