"""A cap on how many of this web process's threads one kind of long request may hold at once
(an event stream, an agent's long-poll), so the rest of the API always keeps threads.

Per process, not shared: each gunicorn process has its own threads to protect. A request that
finds the cap reached is answered at once instead of waiting (each caller says how)."""

from __future__ import annotations

import threading


class ProcessCap:
    """Requests of one kind holding a thread of this process now."""

    def __init__(self) -> None:
        self.open = 0
        self.lock = threading.Lock()

    def take(self, cap: int) -> bool:
        """Hold one more, unless ``cap`` (> 0) are held already; 0 means no cap."""
        with self.lock:
            if cap > 0 and self.open >= cap:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.open = max(0, self.open - 1)
