"""Switchyard settings: one module, every value read from the environment.

With no configuration at all the product runs on its embedded defaults (SQLite under
``var/``, runs executed inside the ASGI process, in-memory channel layer, DEBUG on).
``DATABASE_URL`` and ``REDIS_URL`` switch it to PostgreSQL, Celery and channels_redis.
Every variable is documented in ``.env.example`` and ``docs/configuration.md``.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A developer's .env is read if present; real environment variables win over it.
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"), overwrite=False)

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=True)


def _require(name: str) -> str:
    """Read a variable that production cannot run without, naming it when it is missing."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} must be set when DEBUG is false (see docs/configuration.md)."
        )
    return value


def _development_secret_key() -> str:
    """A stable per-checkout key for DEBUG mode, generated once into var/."""
    path = VAR_DIR / "secret_key"
    if path.is_file():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()
    ALLOWED_HOSTS = env.list(
        "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"]
    )
else:
    SECRET_KEY = _require("SECRET_KEY")
    ALLOWED_HOSTS = [h.strip() for h in _require("ALLOWED_HOSTS").split(",") if h.strip()]

# Origins allowed to open WebSockets and post with CSRF; defaults to the allowed hosts.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "core.views.csrf_failure"

INSTALLED_APPS = [
    "daphne",
    # unfold before django.contrib.admin: its templates override the stock admin's.
    "unfold",
    "unfold.contrib.filters",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "channels",
    "django_prometheus",
    "django_structlog",
    "core",
    "agents",
    "secrets_vault",
    "moderation",
    "monitoring",
    "webhooks",
    "console",
    "openai_api",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "monitoring.middleware.RequestIdMiddleware",
    # Errors under /api/ and /v1/ in the one JSON shape, with DEBUG on too.
    "core.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several coroutines and threads write at once in the embedded mode: WAL lets readers
    # go on while one writes, IMMEDIATE takes the write lock up front (no upgrade deadlock)
    # and the timeout makes writers wait instead of failing with "database is locked".
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    # A connection pool (psycopg_pool), not persistent per-thread connections: under ASGI
    # and in a threaded Celery worker every thread would otherwise keep its own connection
    # open and PostgreSQL runs out of them.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=20),
        "timeout": env.int("DATABASE_POOL_TIMEOUT_S", default=10),
    }
_pool_max = DATABASES["default"].get("OPTIONS", {}).get("pool", {}).get("max_size", 20)
# Requests inside Django at once; the rest wait up to HTTP_QUEUE_TIMEOUT_S, then get a 503
# with Retry-After (config/admission.py). Below the pool's size (streams and WebSocket
# consumers need connections too), so that no request waits for one long enough to fail.
HTTP_MAX_CONCURRENT_REQUESTS = env.int(
    "HTTP_MAX_CONCURRENT_REQUESTS", default=max(1, _pool_max - 4)
)
HTTP_QUEUE_TIMEOUT_S = env.float("HTTP_QUEUE_TIMEOUT_S", default=20.0)

# django-prometheus' wrappers of the same backends count every query and its latency per
# alias (django_db_execute_total, django_db_query_duration_seconds, docs/monitoring.md).
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends.", 1
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, channel layer, Celery ------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    # The pub/sub layer: group_send is one PUBLISH, with no per-channel capacity queue to
    # overflow silently. The event log, not the layer, is what guarantees delivery.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNEL_PREFIX", "switchyard")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds the API throttles' counters: in Redis they are shared by every process
# (distributed mode); the embedded mode has one process, and local memory is enough.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_PREFIX", default="switchyard"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# "celery" hands runs to Celery workers; "inprocess" runs them as asyncio tasks inside the
# ASGI server. Derived from REDIS_URL unless set explicitly.
RUN_EXECUTOR = env.str("RUN_EXECUTOR", default="celery" if REDIS_URL else "inprocess")
if RUN_EXECUTOR not in {"celery", "inprocess"}:
    raise ImproperlyConfigured("RUN_EXECUTOR must be 'celery' or 'inprocess'.")
if RUN_EXECUTOR == "celery" and not REDIS_URL:
    raise ImproperlyConfigured("RUN_EXECUTOR=celery needs REDIS_URL for the broker.")

RUN_TIMEOUT_S = env.int("RUN_TIMEOUT_S", default=600)
# A running run whose heartbeat is older than this is taken to have lost its worker.
RUN_STALE_AFTER_S = env.int("RUN_STALE_AFTER_S", default=15)
RUN_MAX_ATTEMPTS = env.int("RUN_MAX_ATTEMPTS", default=2)
# Heartbeats come from a thread; it stops beating for a loop that has not run a callback
# for this long, so that the runs of a stuck loop are recovered (docs/runtime.md).
RUN_LOOP_STALL_LIMIT_S = env.int("RUN_LOOP_STALL_LIMIT_S", default=120)
REAPER_INTERVAL_S = env.int("REAPER_INTERVAL_S", default=10)
# How often each server process hands over runs the broker refused (0: never), and how
# old such a run must be (its own request may still be handing it over).
DISPATCH_INTERVAL_S = env.float("DISPATCH_INTERVAL_S", default=1.0)
DISPATCH_GRACE_S = env.float("DISPATCH_GRACE_S", default=2.0)
THREAD_HISTORY_MAX_CHARS = env.int("THREAD_HISTORY_MAX_CHARS", default=48_000)
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="switchyard")
# Control work (the reaper, webhook dispatch and deliveries, the token purge) has a queue
# of its own that every worker consumes ahead of the runs queue, so a backlog of runs
# never delays it (docs/runtime.md). A worker without -Q consumes both, control first.
CONTROL_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.control"
CELERY_TASK_QUEUES = (
    Queue(CONTROL_QUEUE, Exchange(CONTROL_QUEUE), routing_key=CONTROL_QUEUE),
    Queue(
        CELERY_TASK_DEFAULT_QUEUE,
        Exchange(CELERY_TASK_DEFAULT_QUEUE),
        routing_key=CELERY_TASK_DEFAULT_QUEUE,
    ),
)
CELERY_TASK_ROUTES = {
    "agents.reap_runs": {"queue": CONTROL_QUEUE},
    "agents.purge_expired_tokens": {"queue": CONTROL_QUEUE},
    "webhooks.*": {"queue": CONTROL_QUEUE},
}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Runs a worker process holds at once (asyncio tasks on its runtime loop); its pool
# threads only admit runs. docs/runtime.md says how to size it.
WORKER_MAX_RUNS = env.int("WORKER_MAX_RUNS", default=1000)
# How long a warm shutdown waits for the runs in flight before leaving them to the reaper.
WORKER_SHUTDOWN_GRACE_S = env.int("WORKER_SHUTDOWN_GRACE_S", default=30)
# A message is acknowledged once its run is claimed, so it is unacknowledged only while a
# worker waits for a free slot. Redis hands a message a dead worker held back to the
# queue this long after delivery (a live worker's redelivered duplicate does nothing).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("BROKER_VISIBILITY_TIMEOUT_S", default=300),
    "unacked_restore_throttle": 1,  # sweep every 10 s, not every 100 s
    # BRPOP over the queues in the order the worker consumes them (control first) every
    # time, not rotated after each message (kombu's default, round_robin).
    "queue_order_strategy": "priority",
}
# The reaper sends a queued run again only after its message could have come back.
RUN_RESEND_AFTER_S = env.int(
    "RUN_RESEND_AFTER_S",
    default=CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] + 60,
)
CELERY_TASK_SOFT_TIME_LIMIT = RUN_TIMEOUT_S + 30
CELERY_TASK_TIME_LIMIT = RUN_TIMEOUT_S + 60
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The worker's own Prometheus endpoint (monitoring/worker.py); 0 turns it off.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDR = env.str("WORKER_METRICS_ADDR", default="127.0.0.1")
# Who may read the web process's /metrics (monitoring/access.py): with METRICS_TOKEN set,
# whoever sends it as a bearer token; otherwise clients on these networks only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list(
    "METRICS_ALLOWED_NETWORKS",
    default=[
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ],
)
CELERY_BEAT_SCHEDULE = {
    "reap-runs": {"task": "agents.reap_runs", "schedule": float(REAPER_INTERVAL_S)},
    "purge-expired-tokens": {"task": "agents.purge_expired_tokens", "schedule": 3600.0},
}

# --- Runs and the demo model ------------------------------------------------------------

DEMO_MODEL_DELAY_MS = env.int("DEMO_MODEL_DELAY_MS", default=30)
RUN_MAX_INPUT_CHARS = env.int("RUN_MAX_INPUT_CHARS", default=32_000)
# Runs one owner may have queued or running at once (0: unlimited); beyond it a create is
# a 429 too_many_runs. A user's RunQuota (admin) overrides it. 2,000 lets one owner fill a
# scaled-out deployment's in-flight capacity while a runaway script stops well before the
# queue holds more than the workers will reach in minutes.
RUNS_MAX_ACTIVE_PER_OWNER = env.int("RUNS_MAX_ACTIVE_PER_OWNER", default=2000)
# The Retry-After of a too_many_runs 429: about how long a few runs take to finish.
RUNS_QUOTA_RETRY_AFTER_S = env.int("RUNS_QUOTA_RETRY_AFTER_S", default=5)
# How long events wait to be written and published together; deltas inside one window
# are coalesced into one event.
EVENT_FLUSH_WINDOW_MS = env.int("EVENT_FLUSH_WINDOW_MS", default=2)
# Under load the event writer lets deltas coalesce for longer, but a watched run still
# gets new text at least this often (agents.runtime.events.pause_before_write).
STREAM_MAX_DELTA_GAP_MS = env.int("STREAM_MAX_DELTA_GAP_MS", default=100)
WS_PING_INTERVAL_S = env.int("WS_PING_INTERVAL_S", default=20)
SSE_KEEPALIVE_S = env.int("SSE_KEEPALIVE_S", default=WS_PING_INTERVAL_S)
# Events a stream viewer may have queued before it counts as too slow (docs/streaming.md).
STREAM_MAX_PENDING_EVENTS = env.int("STREAM_MAX_PENDING_EVENTS", default=1000)
# CIDRs the http_request tool may reach although they are private (on-prem services).
HTTP_TOOL_ALLOW_PRIVATE_NETWORKS = env.list("HTTP_TOOL_ALLOW_PRIVATE_NETWORKS", default=[])
# CIDRs a provider's connection check may reach although private or loopback (a
# self-hosted vLLM or Ollama, 127.0.0.0/8 in development); metadata addresses never.
PROVIDER_CHECK_ALLOW_PRIVATE_NETWORKS = env.list(
    "PROVIDER_CHECK_ALLOW_PRIVATE_NETWORKS", default=[]
)

# --- Webhooks (docs/webhooks.md) --------------------------------------------------------
# CIDRs webhook URLs may point into although private or loopback (e.g. 127.0.0.0/8 for
# local development); empty: only public addresses. Metadata addresses are never allowed.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.list("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=[])
# CIDRs an external moderation rule's API may be reached at although private (self-hosted).
MODERATION_ALLOW_PRIVATE_NETWORKS = env.list("MODERATION_ALLOW_PRIVATE_NETWORKS", default=[])
WEBHOOK_TIMEOUT_S = env.float("WEBHOOK_TIMEOUT_S", default=10.0)
# Waits before the 2nd, 3rd, ... attempt (jittered ±20 %): 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 10 h — about 27.6 hours in all; then the delivery fails and the endpoint is disabled.
WEBHOOK_RETRY_SCHEDULE_S = env.list(
    "WEBHOOK_RETRY_SCHEDULE_S", cast=float, default=[5, 300, 1800, 7200, 18000, 36000, 36000]
)
WEBHOOK_SECRET_OVERLAP_HOURS = env.float("WEBHOOK_SECRET_OVERLAP_HOURS", default=24.0)
WEBHOOK_DISPATCH_INTERVAL_S = env.float("WEBHOOK_DISPATCH_INTERVAL_S", default=5.0)
# Sender threads per process (a slow receiver holds one for up to WEBHOOK_TIMEOUT_S).
WEBHOOK_SENDERS = env.int("WEBHOOK_SENDERS", default=4)
CELERY_BEAT_SCHEDULE["dispatch-due-webhooks"] = {
    "task": "webhooks.dispatch_due",
    "schedule": WEBHOOK_DISPATCH_INTERVAL_S,
}

# --- Auth, API --------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.handlers.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    # Counted per token in the cache below: shared by every process when REDIS_URL is set.
    "DEFAULT_THROTTLE_CLASSES": ["core.throttles.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "token": env.str("API_THROTTLE_RATE", default="6000/min"),
        # Run creations (a single create, a batch, an OpenAI-compatible call) per token;
        # also counted by the "token" rate above.
        "run_create": env.str("API_RUN_CREATE_RATE", default="3000/min"),
    },
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

# knox's token model, named so that agents.ApiToken can point at it from a migration.
KNOX_TOKEN_MODEL = "knox.AuthToken"
# Lifetime of every new API token (0: no expiry); agents.token_services.api_token_create reads it.
API_TOKEN_TTL_HOURS = env.int("API_TOKEN_TTL_HOURS", default=0)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": None
    if API_TOKEN_TTL_HOURS == 0
    else __import__("datetime").timedelta(hours=API_TOKEN_TTL_HOURS),
    "TOKEN_PREFIX": "sy_",
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard API",
    "DESCRIPTION": "Control plane for LLM agents.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get components of their own (FooRequest): without read-only fields
    # in them or in their `required`, and with `minLength: 1` where blanks are refused.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for the moderation stages wherever they appear (a rule's stages, a flag's
    # or a check's stage); without it each field named its own copy of the same enum.
    "ENUM_NAME_OVERRIDES": {"StageEnum": "moderation.models.Stage"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "agents.schema.add_run_stream",
        "moderation.schema.require_policy_or_rules",
        "core.openapi.add_common_errors",
    ],
}

# --- Admin console (django-unfold; every asset is served from its static files, no CDN) ---

UNFOLD = {
    "SITE_TITLE": "Switchyard",
    "SITE_HEADER": "Switchyard",
    "SITE_SUBHEADER": "Operator's console",
    "SITE_SYMBOL": "hub",
    "SITE_URL": "/admin/",
    "SHOW_VIEW_ON_SITE": False,
    "SIDEBAR": {"show_search": True, "navigation": "console.navigation.sidebar"},
    "DASHBOARD_CALLBACK": "console.dashboard.dashboard_callback",
    "STYLES": ["console.navigation.stylesheet"],
    "SCRIPTS": ["console.navigation.script"],
}
# unfold's login form posts no "next": without this a login from /admin/login/ itself lands
# on Django's default /accounts/profile/.
LOGIN_REDIRECT_URL = "admin:index"

# --- Static files, i18n -----------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Security (production) --------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # /livez and /readyz are probed over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^livez$", r"^readyz$", r"^metrics$"]

# --- Logging ----------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
LOGGING_CONFIG = None  # monitoring.logging configures logging (structlog) at app start.
# django-structlog (monitoring/middleware.py, config/celery.py): one request_finished line
# per request; the request id rides in Celery task headers into the worker's lines.
DJANGO_STRUCTLOG_CELERY_ENABLED = True
# The start of a request adds nothing the finish line lacks (its id, path, user, status).
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
# A run's task ends with our run_finished line (run id, status, events); task_succeeded
# would repeat it. Failures, retries and rejections keep their warning/error levels.
DJANGO_STRUCTLOG_CELERY_TASK_SUCCESS_LOG_LEVEL = logging.DEBUG

from monitoring.logging import configure_logging  # noqa: E402  (needs the values above)

configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT)
