"""Settings, all from the environment (12-factor).

The embedded default needs no server: SQLite in WAL mode and kombu's ``filesystem://`` broker
under ``var/``. Set ``DATABASE_URL`` and ``REDIS_URL`` to run on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from factory import wire

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("FACTORY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# A development-only key: production.py refuses to start without SECRET_KEY in the environment.
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_countries",
    "django_celery_beat",
    "tenants",
    "tenants.sovereignty",
    "tenants.events",
    "factory.core",
    "factory.catalog",
    "factory.inventory",
    "factory.agents",
    "factory.telemetry",
    "provisioning",
    "provisioning.console",
    "provisioning.placement",
]

MIDDLEWARE = [
    # Outermost: a HEAD answer is the GET answer without its body, whoever made it.
    "factory.core.middleware.HeadWithoutBodyMiddleware",
    # The client's address when a proxy stands in front (TRUSTED_PROXY_COUNT), before anything
    # keys on it.
    "factory.core.middleware.ClientAddressMiddleware",
    "factory.core.metrics.RequestMetricsMiddleware",  # every answer counted and timed by route
    "factory.core.middleware.RequestIdMiddleware",
    # A body over its limit (REQUEST_MAX_BODY_BYTES, REQUEST_BODY_LIMITS) is a 413, unread.
    "factory.core.middleware.RequestBodyLimitMiddleware",
    # RateLimit-* headers on the answers of rate-limited (API) requests.
    "factory.core.throttling.RateLimitHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A refusal raised in a plain Django view (the console): its HTML page, never a 500.
    "factory.core.errors.DomainErrorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "factory.urls"
# Paths whose errors are HTML pages (templates <dir>/<status>.html, else <dir>/error.html),
# not the API's JSON body: the console's (factory.core.errors.error_response).
HTML_ERROR_PAGES = {"/console/": "console/errors"}
WSGI_APPLICATION = "factory.wsgi.application"
AUTH_USER_MODEL = "tenants.User"
# Django's model backend, with failed log-ins counted and locked out (tenants.services.logins).
AUTHENTICATION_BACKENDS = ["tenants.backends.LockoutModelBackend"]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'factory.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while the worker and beat write; IMMEDIATE transactions
    # take the write lock up front so concurrent writers wait (busy_timeout) instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
# The longest one statement may run (PostgreSQL's statement_timeout; 0: no limit). The web
# tier sets it (compose, runfactory: 30 s): a request its client gave up on, or one asking too
# much, is cancelled in the database instead of holding a worker and a connection; its answer
# is a 503 with Retry-After (tenants.django_errors). Workers and migrations run without one.
DATABASE_STATEMENT_TIMEOUT_MS = int(os.environ.get("DATABASE_STATEMENT_TIMEOUT_MS", "0"))
if DATABASES["default"]["ENGINE"].endswith("postgresql") and DATABASE_STATEMENT_TIMEOUT_MS > 0:
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c statement_timeout={DATABASE_STATEMENT_TIMEOUT_MS}"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The ledger's Ed25519 key (signed checkpoints, evidence packs): created 0600 on first use
# unless LEDGER_SIGNING_KEY_CREATE is off (then a missing file refuses to sign: fail closed).
LEDGER_SIGNING_KEY_FILE = Path(
    os.environ.get("LEDGER_SIGNING_KEY_FILE", VAR_DIR / "ledger-signing-key.pem")
)
LEDGER_SIGNING_KEY_CREATE = env_bool("LEDGER_SIGNING_KEY_CREATE", True)
# Retired ledger public keys verification still trusts (PEM files, colon-separated): trust is
# pinned here and in the key file, never in the LedgerKey table.
LEDGER_TRUSTED_PUBLIC_KEYS = [
    p for p in os.environ.get("LEDGER_TRUSTED_PUBLIC_KEYS", "").split(":") if p
]

# --- Broker, cache ----------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
# Queues by concern, each with workers of its own in compose, so that none starves another:
# workflow steps and advances (the default queue), scheduled jobs (the reconciler, sweeps,
# scans, the lockbox's and the ledgers' jobs), telemetry maintenance (roll-ups, retention)
# and webhook deliveries (a slow receiver never holds a worker a workflow needs). Every worker
# names its queues with -Q; one for all of them is ",".join(CELERY_TASK_QUEUES).
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
JOBS_QUEUE = os.environ.get("JOBS_QUEUE", "jobs")
TELEMETRY_QUEUE = os.environ.get("TELEMETRY_QUEUE", "telemetry")
WEBHOOK_QUEUE = os.environ.get("WEBHOOK_QUEUE", "webhooks")
#: Scheduled jobs of ``provisioning`` (the rest of its tasks are the workflow engine's).
_PROVISIONING_JOBS = (
    "reconcile",
    "health_sweep",
    "firmware_compliance_scan",
    "detect_stale_agents",
)


def celery_routing(steps: str, jobs: str, telemetry: str, webhooks: str) -> tuple[dict, dict]:
    """``(CELERY_TASK_QUEUES, CELERY_TASK_ROUTES)`` for these queue names: every task by its
    stable name (and the module-path names it had before, ``provisioning.tasks``)."""
    queues = {
        name: {"exchange": name, "routing_key": name} for name in (steps, jobs, telemetry, webhooks)
    }
    routes: dict[str, dict[str, str]] = {"events.*": {"queue": webhooks}}
    for prefix in ("provisioning.", "provisioning.tasks."):
        routes[f"{prefix}telemetry_*"] = {"queue": telemetry}
        routes.update({f"{prefix}{job}": {"queue": jobs} for job in _PROVISIONING_JOBS})
    routes.update({"tenants.*": {"queue": jobs}, "placement.*": {"queue": jobs}})
    return queues, routes


CELERY_TASK_QUEUES, CELERY_TASK_ROUTES = celery_routing(
    CELERY_TASK_DEFAULT_QUEUE, JOBS_QUEUE, TELEMETRY_QUEUE, WEBHOOK_QUEUE
)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django-celery-beat's schedule (rows, editable in admin) behind a lease: beat may run as several
# replicas and only the lease's holder sends (provisioning.scheduler). A lost holder is replaced
# within SCHEDULER_LEASE_SECONDS (and a third); no renewal for that long reads as no scheduler
# (/readyz/scheduler, factory_scheduler_up).
CELERY_BEAT_SCHEDULER = "provisioning.scheduler:LeaderScheduler"
SCHEDULER_LEASE_SECONDS = float(os.environ.get("SCHEDULER_LEASE_SECONDS", "10"))
CELERY_TIMEZONE = "UTC"
# A workflow step's lease: a worker that vanishes mid-step is noticed after this long.
WORKFLOW_LEASE_SECONDS = int(os.environ.get("WORKFLOW_LEASE_SECONDS", "15"))
# A site agent silent for longer than this has its site's UltraServers marked unreachable.
AGENT_SILENT_AFTER_SECONDS = int(os.environ.get("AGENT_SILENT_AFTER_SECONDS", "300"))

# Telemetry: how long raw per-chip samples and 1-minute roll-ups are kept (1-hour ones: a year),
# the health rules' limits, and where telemetry goes when it leaves a site (the code of the site
# whose country and region the control plane runs in; empty: the control plane is inside each
# site's own boundary, as in the embedded default).
TELEMETRY_RAW_RETENTION_HOURS = float(os.environ.get("TELEMETRY_RAW_RETENTION_HOURS", "48"))
TELEMETRY_MINUTE_RETENTION_DAYS = float(os.environ.get("TELEMETRY_MINUTE_RETENTION_DAYS", "30"))
TELEMETRY_HOUR_RETENTION_DAYS = float(os.environ.get("TELEMETRY_HOUR_RETENTION_DAYS", "400"))
TELEMETRY_INTERVAL_SECONDS = float(os.environ.get("TELEMETRY_INTERVAL_SECONDS", "10"))
# A site agent's batch (50 reports of 144 chips) is about 0.6 MiB; the bench sends 60 a request.
TELEMETRY_MAX_BATCH_BYTES = int(os.environ.get("TELEMETRY_MAX_BATCH_BYTES", str(8 * 1024 * 1024)))
TELEMETRY_DESTINATION_SITE = os.environ.get("TELEMETRY_DESTINATION_SITE", "")
# Per health rule, the severity and action that override the wire contract's defaults, as JSON:
# {"thermal-throttle": {"severity": "critical", "action": "maintain"}}. Checked at startup
# (factory.telemetry.policy): a wrong rule or value stops the process, naming it.
FACTORY_FAULT_POLICY = json.loads(os.environ.get("FACTORY_FAULT_POLICY", "{}"))
# Identical decisions (telemetry egress on each config poll) within this period are one chained
# row plus a count; the count reaches the chain as a summary row when the period ends.
SOVEREIGNTY_DECISION_REPEAT_SECONDS = int(
    os.environ.get("SOVEREIGNTY_DECISION_REPEAT_SECONDS", "3600")
)
HEALTH_LINK_DOWN_SECONDS = float(os.environ.get("HEALTH_LINK_DOWN_SECONDS", "7"))
HEALTH_THROTTLE_SECONDS = float(os.environ.get("HEALTH_THROTTLE_SECONDS", "5"))
HEALTH_COOLANT_MAX_C = float(os.environ.get("HEALTH_COOLANT_MAX_C", "45"))

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- I18N / static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "admin:login"

# --- API --------------------------------------------------------------------------------------
# Proxies in front of gunicorn that append the client's address to X-Forwarded-For (compose's
# nginx front: 1). 0: none; the header is ignored and REMOTE_ADDR is the peer's.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))

REST_FRAMEWORK = {
    # The client is REMOTE_ADDR (ClientAddressMiddleware has made it so); never X-Forwarded-For.
    "NUM_PROXIES": 0,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.api.permissions.RolePermission"],
    "DEFAULT_RENDERER_CLASSES": [
        "factory.core.renderers.OrjsonRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["factory.core.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["factory.core.throttling.CredentialRateThrottle"],
    # Strict: an unknown query parameter or ordering field is a 400 naming it.
    "DEFAULT_FILTER_BACKENDS": [
        "tenants.filters.FilterBackend",
        "tenants.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "factory.core.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "factory.core.errors.api_exception_handler",
    "COERCE_DECIMAL_TO_STRING": False,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AI Factory control plane API",
    "DESCRIPTION": (
        "Sites, racks, power feeds, UltraServers and chips of provider-managed AI factories in "
        "customers' data centers. Authenticate with `Authorization: Bearer <token>`. Every error "
        "is JSON: `{status, code, message, errors: [{field, code, message}]}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Served from the drf-spectacular-sidecar package: the docs work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "factory.core.schema.add_error_responses",
        "tenants.api.schema.document_partial_objects",
    ],
    "ENUM_NAME_OVERRIDES": {
        "CoolingEnum": "factory.catalog.choices.Cooling",
        # The audit log's action (an audit event, a server's history) beside a fault's action.
        "AuditActionEnum": "tenants.choices.AuditAction",
        "FaultActionEnum": "factory.telemetry.choices.FaultAction",
        # Placement (issue 16): several of its models have a "state".
        "ReservationStateEnum": "provisioning.placement.choices.ReservationState",
        "UnitStateEnum": "provisioning.placement.choices.UnitState",
        "UnitMemberStateEnum": "provisioning.placement.choices.MemberState",
        "UnitReplacementStateEnum": "provisioning.placement.choices.ReplacementState",
        "TopologyConstraintEnum": "provisioning.placement.choices.TopologyConstraint",
        "SpreadEnum": "provisioning.placement.choices.Spread",
        "MemberRoleEnum": "provisioning.placement.choices.MemberRole",
        "CommandKindEnum": "factory.agents.choices.CommandKind",
        "CommandStateEnum": "factory.agents.choices.CommandState",
        "WorkflowKindEnum": "provisioning.choices.WorkflowKind",
        "WorkflowStateEnum": "provisioning.choices.WorkflowState",
        "TargetStateEnum": "provisioning.choices.TargetState",
        "StepStateEnum": "provisioning.choices.StepState",
        "WindowStatusEnum": "provisioning.choices.WindowStatus",
        "JobOutcomeEnum": "provisioning.choices.JobOutcome",
        # One name per enum wherever it appears (chips, chip-health, raw telemetry, capacity).
        "ChipHealthEnum": "factory.inventory.choices.ChipHealth",
        "ResolutionEnum": "factory.telemetry.choices.Resolution",
        "SovereigntyActionEnum": "tenants.sovereignty.api.serializers.ACTIONS",
        "WhatIfSubjectEnum": "tenants.sovereignty.api.serializers.WHAT_IF_SUBJECTS",
        "EventKindEnum": "tenants.events.choices.EventKindChoice",
        # The lockbox (issue 14): one name per choice set wherever it appears (its scopes made
        # the tokens' "scope" ambiguous: named here, as it was).
        "ScopeEnum": "tenants.choices.TokenScope",
        # The lockbox's own:
        "AccessRequestStatusEnum": "tenants.sovereignty.models.AccessRequestStatus",
        "JustificationEnum": "tenants.sovereignty.models.Justification",
        "AccessScopeEnum": "tenants.sovereignty.models.AccessScope",
        "ApprovalNeedEnum": "tenants.sovereignty.models.ApprovalNeed",
        "PolicyEntryJustificationEnum": "tenants.sovereignty.api.lockbox.ENTRY_JUSTIFICATIONS",
        "PolicyEntryScopeEnum": "tenants.sovereignty.api.lockbox.ENTRY_SCOPES",
    },
}

# --- Protection: rate limits, request limits ---------------------------------------------------
# Requests per fixed window ("N/s", "N/min", "N/hour", "N/day", "N/10s"; "off": none) for each
# API token, each session's user, each site agent (its gateway calls; telemetry ingest has its
# own, larger budget) and each anonymous client address; "refused": the refused credentials
# (401s: unknown, expired or revoked tokens) of each client address, past which they are 429s.
# Counted in RATE_LIMIT_CACHE: Redis when REDIS_URL is set, so every web worker shares one count.
RATE_LIMITS = {
    "token": os.environ.get("RATE_LIMIT_TOKEN", "1200/min"),
    "user": os.environ.get("RATE_LIMIT_USER", "1200/min"),
    "agent": os.environ.get("RATE_LIMIT_AGENT", "12000/min"),
    "telemetry": os.environ.get("RATE_LIMIT_TELEMETRY", "60000/min"),
    "anon": os.environ.get("RATE_LIMIT_ANON", "300/min"),
    "refused": os.environ.get("RATE_LIMIT_REFUSED", "60/min"),
    # /metrics and /api/v1/metrics/, per token: a scrape reads the database (cached for
    # METRICS_CACHE_SECONDS per scope), so it has a budget of its own, apart from "token".
    "metrics": os.environ.get("RATE_LIMIT_METRICS", "60/min"),
}
RATE_LIMIT_CACHE = "default"
RATE_LIMIT_KEY_PREFIX = os.environ.get("RATE_LIMIT_KEY_PREFIX", "ratelimit")
# Request bodies: at most REQUEST_MAX_BODY_BYTES, except under the path prefixes named here.
REQUEST_MAX_BODY_BYTES = int(os.environ.get("REQUEST_MAX_BODY_BYTES", str(1024 * 1024)))
REQUEST_BODY_LIMITS = {f"{wire.API_ROOT}{wire.TELEMETRY_PATH}": TELEMETRY_MAX_BATCH_BYTES}
# JSON request bodies nested deeper than this are refused (400 too_deep) before parsing.
JSON_MAX_DEPTH = int(os.environ.get("JSON_MAX_DEPTH", "64"))
# A metrics scrape's database-read families are kept this long per scope in the default cache
# (shared by every web process with Redis), so scrapers cost at most one read per scope per
# period; the in-process counters are always read live. 0: no cache.
METRICS_CACHE_SECONDS = float(os.environ.get("METRICS_CACHE_SECONDS", "10"))

# --- Tokens -----------------------------------------------------------------------------------
API_TOKEN_DEFAULT_DAYS = int(os.environ.get("API_TOKEN_DEFAULT_DAYS", "90"))
# Failed log-ins (API token log-in, console, admin) per username and client address: after this
# many within the window (from the first failure), that username is refused from that address
# (429 in the API) until the window has passed.
LOGIN_MAX_FAILURES = int(os.environ.get("LOGIN_MAX_FAILURES", "5"))
LOGIN_LOCKOUT_SECONDS = int(os.environ.get("LOGIN_LOCKOUT_SECONDS", "900"))

# --- The events' watch stream (tenants.events.stream) -------------------------------------------
# Each open stream reads the log this often, and sends a ": keepalive" comment after this long
# without an event. Each stream holds a web thread: run gunicorn with the gthread worker.
EVENTS_WATCH_POLL_SECONDS = float(os.environ.get("EVENTS_WATCH_POLL_SECONDS", "1"))
EVENTS_WATCH_KEEPALIVE_SECONDS = float(os.environ.get("EVENTS_WATCH_KEEPALIVE_SECONDS", "15"))
# Open streams at once (tenants.events.slots; past a cap a 429 with Retry-After): per API token
# (a session: per user), per tenant (all its people), and per web process (keep it under the
# process's --threads, so the rest of the API always has threads; 0: no cap). The first two are
# counted in Redis (REDIS_URL) under this key prefix, with leases a killed worker cannot leak.
EVENTS_WATCH_MAX_PER_TOKEN = int(os.environ.get("EVENTS_WATCH_MAX_PER_TOKEN", "4"))
EVENTS_WATCH_MAX_PER_TENANT = int(os.environ.get("EVENTS_WATCH_MAX_PER_TENANT", "16"))
EVENTS_WATCH_MAX_PER_PROCESS = int(os.environ.get("EVENTS_WATCH_MAX_PER_PROCESS", "4"))
EVENTS_WATCH_KEY_PREFIX = os.environ.get("EVENTS_WATCH_KEY_PREFIX", "eventstreams")
# An open stream checks its token (not revoked, not expired) and its person's membership again
# this often, and ends when they no longer hold.
EVENTS_WATCH_RECHECK_SECONDS = float(os.environ.get("EVENTS_WATCH_RECHECK_SECONDS", "15"))

# --- The agents' command long-poll (factory.agents.services.claim_waiting) ----------------------
# Long-polls waiting at once per web process; past it a claim is answered at once (what is queued,
# or nothing and retry_after_seconds), so agents at more sites than threads never take the
# threads the rest of the API needs. With the watch streams' cap, keep it under --threads.
AGENT_CLAIM_WAITS_MAX_PER_PROCESS = int(os.environ.get("AGENT_CLAIM_WAITS_MAX_PER_PROCESS", "2"))

# --- Webhooks (tenants.events.webhooks) ---------------------------------------------------------
# One attempt, start to end (resolving, connecting, TLS, sending, the answer), is abandoned past
# the deadline ("too_slow"), however slowly a receiver drips bytes; the connect and read timeouts
# bound each step within it. A claimed delivery's lease is at least the deadline plus 10 s, so
# a slow receiver is never called twice at once; a worker lost mid-call is noticed after it.
WEBHOOK_ATTEMPT_DEADLINE_SECONDS = float(os.environ.get("WEBHOOK_ATTEMPT_DEADLINE_SECONDS", "15"))
WEBHOOK_LEASE_SECONDS = float(os.environ.get("WEBHOOK_LEASE_SECONDS", "60"))
WEBHOOK_CONNECT_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_CONNECT_TIMEOUT_SECONDS", "5"))
WEBHOOK_READ_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_READ_TIMEOUT_SECONDS", "10"))
# Retries: base * factor**(n-1) seconds after the n-th failed attempt (±20 %), at most max;
# after WEBHOOK_MAX_ATTEMPTS attempts the delivery fails. 10 s, 1 min, 6 min, 36 min, 3.6 h, 6 h…
WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", "10"))
WEBHOOK_RETRY_FACTOR = float(os.environ.get("WEBHOOK_RETRY_FACTOR", "6"))
WEBHOOK_RETRY_MAX_SECONDS = float(os.environ.get("WEBHOOK_RETRY_MAX_SECONDS", "21600"))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "12"))
# A subscription is disabled (with a notice) after this many consecutive deliveries gave up
# (each after its WEBHOOK_MAX_ATTEMPTS attempts); a delivery that succeeds resets the count.
WEBHOOK_DISABLE_AFTER_FAILURES = int(os.environ.get("WEBHOOK_DISABLE_AFTER_FAILURES", "10"))
# Destinations (the SSRF stance, tenants.events.delivery.DestinationPolicy): the control
# plane's own services are always refused (the hosts of DATABASES, CELERY_BROKER_URL, REDIS_URL
# and CACHES, this host, and WEBHOOK_DENIED_HOSTS: comma-separated names of the deployment's
# other hosts, e.g. its web service; tenants.events.destinations); so are link-local,
# 0.0.0.0/8, multicast and reserved addresses, and the networks in WEBHOOK_DENIED_NETWORKS
# (comma-separated CIDRs: the control plane's own networks). Loopback only when allowed
# (tests); private networks allowed by default (a customer's receivers sit on its premises).
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", False)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", True)
WEBHOOK_DENIED_NETWORKS = env_list("WEBHOOK_DENIED_NETWORKS", "")
WEBHOOK_DENIED_HOSTS = env_list("WEBHOOK_DENIED_HOSTS", "")
# CA bundle (a path) for https receivers with a private CA; empty: certifi's, as requests.
WEBHOOK_CA_BUNDLE = os.environ.get("WEBHOOK_CA_BUNDLE", "")

# --- Email (notices such as a disabled webhook) ------------------------------------------------
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_TIMEOUT = float(os.environ.get("EMAIL_TIMEOUT", "10"))  # a hung mail server holds no worker
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "ai-factory@localhost")

# --- Logging (structlog renders; stdlib carries) -----------------------------------------------
LOG_JSON = env_bool("LOG_JSON", False)
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": "structlog.stdlib.ProcessorFormatter",
            "processor": "ext://factory.core.logging.RENDERER",
            "foreign_pre_chain": "ext://factory.core.logging.FOREIGN_PRE_CHAIN",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
