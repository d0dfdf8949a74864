"""structlog wiring: one renderer for our loggers and the stdlib's, with the request id bound."""

from __future__ import annotations

import structlog
from django.conf import settings

FOREIGN_PRE_CHAIN = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _renderer():
    if getattr(settings, "LOG_JSON", False):
        return structlog.processors.JSONRenderer()
    # Tracebacks are already text (format_exc_info, which JSON needs too): print them plainly.
    return structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )


class _LazyRenderer:
    """Chooses JSON or console output when first used, after settings are loaded."""

    _inner = None

    def __call__(self, logger, method_name, event_dict):
        if self._inner is None:
            self._inner = _renderer()
        return self._inner(logger, method_name, event_dict)


RENDERER = _LazyRenderer()

structlog.configure(
    processors=[
        *FOREIGN_PRE_CHAIN,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
