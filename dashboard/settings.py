"""The one settings module.

Every value comes from the environment through the small typed helpers below, which
raise ImproperlyConfigured on a bad value. A fresh checkout runs with no configuration:
SQLite under ./var, Redis on localhost, the web UI on :8000 and the gateway on :8001.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from dashboard.system.redis_service import celery_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


# Everything Switchboard writes (the var dir, the SQLite file, bundles, logs, the secret
# key) is private to the service user. Set here, in the one module every process runs
# first (manage.py commands, gunicorn's workers, the Celery worker, the runtime, whose
# runner processes inherit it), before anything is written.
os.umask(0o077)
# Django's file storage chmods what it writes (collectstatic's copies too) to this, not to
# what the umask leaves: 0644 unless told.
FILE_UPLOAD_PERMISSIONS = 0o600

# Where bundles, runner logs, runner sockets and the default SQLite file live.
VAR_DIR = Path(env_str("SWITCHBOARD_VAR_DIR", str(BASE_DIR / "var"))).resolve()
# Created here so that a fresh checkout's first command (even `migrate`) just works.
VAR_DIR.mkdir(parents=True, exist_ok=True)
# A var dir made before the umask above (an older install, or by hand) is made private
# too: with its top directory 0700 nothing under it can be reached by another local user.
try:
    VAR_DIR.chmod(0o700)
except OSError as exc:
    raise ImproperlyConfigured(
        f"SWITCHBOARD_VAR_DIR {VAR_DIR} must be a directory owned by the user Switchboard "
        f"runs as (could not make it private: {exc.strerror})"
    ) from None

# The key this project shipped as a default before installations made their own. It is
# public, so it is refused (below) unless DEBUG is on.
DEVELOPMENT_SECRET_KEY = "switchboard-dev-only-secret-change-me-in-production"


def installation_secret_key(path: Path) -> str:
    """This installation's own key, kept in the var dir: made on first start, reused after.

    Every process of an installation shares SWITCHBOARD_VAR_DIR, so `manage.py up`, the
    runtime, the worker and a gunicorn started on its own all read the same file without
    being told anything. The key is written whole to a file only this process created
    (O_EXCL) and then linked into place: link() refuses an existing name, so when several
    processes start at once exactly one key wins and the others read it complete.
    """
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(get_random_secret_key() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)
        except FileExistsError:
            pass  # Another process made it first: its key is the installation's.
        finally:
            tmp.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # Copied in or restored from a backup with wider permissions.
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(
            f"{path} is empty: delete it to have a new key made, or set SECRET_KEY"
        )
    return key


DEBUG = env_bool("DEBUG", False)
# SECRET_KEY from the environment wins; otherwise the installation's own key file. What
# derives from it and what rotating it does: README.md, "Rotating the secret key".
SECRET_KEY = env_str("SECRET_KEY", "") or installation_secret_key(VAR_DIR / "secret-key")
if SECRET_KEY == DEVELOPMENT_SECRET_KEY and not DEBUG:
    raise ImproperlyConfigured(
        "SECRET_KEY is the public development key, which anyone can sign dashboard tokens "
        "and the runtime's admin secret with. Unset SECRET_KEY to use this installation's "
        f"own key ({VAR_DIR / 'secret-key'}, made on first start), or set it to a long "
        "random value; only DEBUG=true allows the development key."
    )
ALLOWED_HOSTS = env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tables2",
    "django_htmx",
    "axes",
    "dashboard.controlplane",
    "dashboard.web",
    "dashboard.runtime",
    "dashboard.system",
    "dashboard.webhooks",
]

MIDDLEWARE = [
    "dashboard.web.middleware.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files from the Django process, so no other web server is needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.web.middleware.HtmxSignInMiddleware",
    "dashboard.web.middleware.ViewerTimezoneMiddleware",
    "dashboard.web.middleware.DatabaseLostMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
# The web server (granian, see dashboard/asgi.py) answers 408 and closes a connection whose
# request body sends nothing for this many seconds; its header read timeout is granian's
# own GRANIAN_HTTP1_HEADER_READ_TIMEOUT (milliseconds, default 30000).
WEB_BODY_TIMEOUT = env_float("SWITCHBOARD_WEB_BODY_TIMEOUT", 30.0)
# Live updates of the Versions page (server-sent events, dashboard/web/live.py): a comment
# line every HEARTBEAT seconds, each stream ends after MAX_SECONDS (the browser reconnects),
# and one session holds at most MAX_PER_SESSION streams at once (past that a page polls).
LIVE_HEARTBEAT_SECONDS = env_float("SWITCHBOARD_LIVE_HEARTBEAT_SECONDS", 15.0)
LIVE_MAX_SECONDS = env_float("SWITCHBOARD_LIVE_MAX_SECONDS", 300.0)
LIVE_MAX_PER_SESSION = env_int("SWITCHBOARD_LIVE_MAX_PER_SESSION", 4)

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

# PostgreSQL only (SQLite keeps a connection per request): see DATABASES below.
DB_POOL_SIZE = env_int("SWITCHBOARD_DB_POOL_SIZE", 4)
if DB_POOL_SIZE < 0:
    raise ImproperlyConfigured(
        f"SWITCHBOARD_DB_POOL_SIZE must be 0 (no pool) or more, got {DB_POOL_SIZE}"
    )
_default_db = f"sqlite:///{VAR_DIR / 'switchboard.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(env_str("DATABASE_URL", _default_db), conn_max_age=60)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and runtime are separate processes sharing one file: WAL lets readers
    # run beside the writer, IMMEDIATE transactions make writers queue instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A database that does not answer is reported within seconds, not after the OS's
    # own connect timeout of minutes.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 3
    # A connection the server dropped (restart, failover, pg_terminate_backend) is found
    # and replaced when the next request starts, instead of failing that request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Under ASGI every request runs its sync code on a thread of its own, so a persistent
    # connection (CONN_MAX_AGE) is never reused and each request would connect anew:
    # Django's psycopg pool keeps up to this many connections per process instead (0: no
    # pool, a connection per request). Each one is checked when taken; a broken one has
    # the pool replace every broken idle connection at once (dashboard/system/database.py).
    if DB_POOL_SIZE:
        from dashboard.system.database import check_connection

        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_SIZE,
            # How long a request waits for a connection when all are taken or none can
            # be made; then it is a 503 (DatabaseLostMiddleware).
            "timeout": 10,
            "check": check_connection,
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First, so a locked-out username never reaches the password check (django-axes).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Sign-in throttling (django-axes): after this many failed sign-ins for one username from
# one address, that pair is refused (429) until the cool-off has passed; a success resets
# the count. Failed API token checks are counted the same way, per address. Attempts are
# kept in the database (AccessAttempt, visible in the admin); `manage.py axes_reset`
# clears them.
AXES_FAILURE_LIMIT = env_int("SWITCHBOARD_SIGNIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("SWITCHBOARD_SIGNIN_COOLOFF_SECONDS", 15 * 60))
# Username and address together: one address cannot lock a user out everywhere, and one
# username is not guessed from one address past the limit.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "dashboard.web.views.signin_locked_out"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "apps"
LOGOUT_REDIRECT_URL = "login"
# Sessions stay in the database (Django's default) rather than a per-process cache: a
# sign-out must end the session in every web worker at once. It costs one small query
# per poll.

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "collected-static"
# WhiteNoise serves it; it exists even before the first collectstatic (no start-up warning).
STATIC_ROOT.mkdir(exist_ok=True)
# Hashed names, gzip/Brotli copies and year-long cache lifetimes (dashboard/web/staticstorage.py).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "dashboard.web.staticstorage.StaticStorage"},
}

# Where a Redis is looked for when REDIS_URL is unset; `manage.py up` starts a private one
# (dashboard/system/redis_service.py) when nothing answers there.
DEFAULT_REDIS_URL = env_str("SWITCHBOARD_DEFAULT_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_URL = env_str("REDIS_URL", DEFAULT_REDIS_URL)
# Names this installation's keys and change channel, so that two installations sharing
# one Redis server (a demo and the test suite, say) never read each other's.
REDIS_NAMESPACE = env_str("SWITCHBOARD_REDIS_NAMESPACE", "switchboard")


# Redis is the cache every web worker shares; sessions are read through it (see
# dashboard/web/sessions.py for why and what happens when Redis is down).
CACHES = {
    "default": {
        # Django's RedisCache with one client per process (see dashboard/system/cache.py).
        "BACKEND": "dashboard.system.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_NAMESPACE,
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
SESSION_ENGINE = "dashboard.web.sessions"
CSRF_FAILURE_VIEW = "dashboard.web.views.csrf_failure"

# Celery reads only the CELERY_-prefixed names below (see dashboard/celery.py);
# tests/test_celery_settings.py proves the ones we rely on are in effect.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", celery_redis_url(REDIS_URL))
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", celery_redis_url(REDIS_URL))
CELERY_TASK_ACKS_LATE = True  # A task is acknowledged only after it finished...
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...and requeued if its worker process died.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 6 * 3600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 6 * 3600 + 60)
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Unacknowledged tasks come back after this long if a whole worker vanished; the
# operations sweeper (controlplane.tasks.sweep_operations) recovers them sooner.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 7 * 3600, "socket_connect_timeout": 1}
# A web request that queues an operation while Redis is down is refused within about two
# seconds (saying Redis is down) instead of holding its thread through Celery's default
# 20 retries of the result store; the worker keeps reconnecting on its own meanwhile.
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 1
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 0.5,
    }
}
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_TRACK_STARTED = True
# An operation no worker has taken within this many seconds ends Failed, saying so.
OPERATION_QUEUED_LIMIT = env_int("SWITCHBOARD_OPERATION_QUEUED_LIMIT", 600)
CELERY_BEAT_SCHEDULE = {
    "sweep-operations": {"task": "controlplane.sweep_operations", "schedule": 15.0},
    "sweep-webhook-deliveries": {"task": "webhooks.sweep_deliveries", "schedule": 60.0},
    "sweep-retention": {"task": "controlplane.sweep_retention", "schedule": 300.0},
    "sweep-incoming": {"task": "controlplane.sweep_incoming", "schedule": 600.0},
}
CELERY_TIMEZONE = "UTC"

# Control API as seen by the dashboard's Celery tasks and by the CLI.
SWITCHBOARD_API_URL = env_str("SWITCHBOARD_API_URL", "http://127.0.0.1:8000")
# The runtime: a public gateway and a loopback-only admin API for the control plane.
GATEWAY_HOST = env_str("SWITCHBOARD_GATEWAY_HOST", "127.0.0.1")
GATEWAY_PORT = env_int("SWITCHBOARD_GATEWAY_PORT", 8001)
GATEWAY_URL = env_str("SWITCHBOARD_GATEWAY_URL", f"http://{GATEWAY_HOST}:{GATEWAY_PORT}")
RUNTIME_ADMIN_PORT = env_int("SWITCHBOARD_RUNTIME_PORT", 8002)
# A gateway caller that takes longer than this to send a request head, or whose request
# body (or reading of an answer) makes no progress for this long, is disconnected.
GATEWAY_HEAD_TIMEOUT = env_float("SWITCHBOARD_GATEWAY_HEAD_TIMEOUT", 10.0)
GATEWAY_BODY_TIMEOUT = env_float("SWITCHBOARD_GATEWAY_BODY_TIMEOUT", 30.0)
RUNTIME_URL = env_str("SWITCHBOARD_RUNTIME_URL", f"http://127.0.0.1:{RUNTIME_ADMIN_PORT}")

# Bundles: an upload larger than this, compressed or unpacked, is refused.
MAX_BUNDLE_BYTES = env_int("SWITCHBOARD_MAX_BUNDLE_BYTES", 20 * 1024 * 1024)
MAX_BUNDLE_UNPACKED_BYTES = env_int("SWITCHBOARD_MAX_BUNDLE_UNPACKED_BYTES", 100 * 1024 * 1024)
# Bundle bombs: checked while the archive is read, before the bytes they guard are
# decompressed or written (dashboard/controlplane/bundles.py). The name limit leaves room
# for the var dir's own path under Linux's 4096-byte PATH_MAX.
MAX_BUNDLE_MEMBERS = env_int("SWITCHBOARD_MAX_BUNDLE_MEMBERS", 10_000)
MAX_BUNDLE_NAME_BYTES = env_int("SWITCHBOARD_MAX_BUNDLE_NAME_BYTES", 1024)
MAX_BUNDLE_HEADER_BYTES = env_int("SWITCHBOARD_MAX_BUNDLE_HEADER_BYTES", 64 * 1024)
# A staged upload left this long under var/incoming/ (its web worker was killed mid-deploy)
# is removed by the beat's sweep; uploads are staged and installed within one request.
INCOMING_MAX_AGE = env_int("SWITCHBOARD_INCOMING_MAX_AGE", 3600)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BUNDLE_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Crash backoff for runners: each consecutive crash waits this much longer, up to the cap.
RUNNER_BACKOFF_STEP = env_float("SWITCHBOARD_RUNNER_BACKOFF_STEP", 30.0)
RUNNER_BACKOFF_CAP = env_float("SWITCHBOARD_RUNNER_BACKOFF_CAP", 600.0)

# The machine catalogue, applied inside each runner's sandbox as resource limits: a memory
# cap (address space), a CPU share (nice), processes and threads (a runner's handler pool
# alone may hold max_multiplexing <= 1000 threads), open files, and the largest file.
MACHINE_TYPES = {
    "XS": {"memory_mb": 1024, "nice": 10, "processes": 1200, "open_files": 1024, "file_mb": 256},
    "S": {"memory_mb": 2048, "nice": 5, "processes": 1200, "open_files": 2048, "file_mb": 512},
    "M": {"memory_mb": 4096, "nice": 0, "processes": 2400, "open_files": 4096, "file_mb": 1024},
    "L": {"memory_mb": 8192, "nice": 0, "processes": 2400, "open_files": 4096, "file_mb": 2048},
}

# Where runners run (dashboard/runtime/ray_backend.py): "local" (child processes of the
# runtime, each in a sandbox) or "ray" (each revision a Ray Serve application on the
# cluster at RAY_ADDRESS; needs `pip install -e '.[ray]'`). Serve's HTTP proxy, which the
# gateway forwards to, listens on 127.0.0.1:SWITCHBOARD_RAY_SERVE_PORT on the head node.
BACKEND = env_str("SWITCHBOARD_BACKEND", "local")
RAY_ADDRESS = env_str("RAY_ADDRESS", "")
RAY_SERVE_PORT = env_int("SWITCHBOARD_RAY_SERVE_PORT", 8011)
# machine_type → a Ray replica's resources (ray_actor_options): CPUs (fractions allowed),
# memory in MB, GPUs. The operator edits this table to fit the cluster's nodes.
RAY_MACHINE_TYPES = {
    "XS": {"num_cpus": 0.1, "memory_mb": 256, "num_gpus": 0},
    "S": {"num_cpus": 0.25, "memory_mb": 512, "num_gpus": 0},
    "M": {"num_cpus": 0.5, "memory_mb": 1024, "num_gpus": 0},
    "L": {"num_cpus": 1, "memory_mb": 2048, "num_gpus": 0},
}

# Webhook deliveries (dashboard/webhooks): each attempt waits this long for an answer; a
# failed one is tried again after WEBHOOK_RETRY_DELAY s, doubling each time up to the cap,
# until WEBHOOK_MAX_ATTEMPTS attempts were made.
WEBHOOK_TIMEOUT = env_float("SWITCHBOARD_WEBHOOK_TIMEOUT", 10.0)
WEBHOOK_MAX_ATTEMPTS = env_int("SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_RETRY_DELAY = env_float("SWITCHBOARD_WEBHOOK_RETRY_DELAY", 10.0)
WEBHOOK_RETRY_CAP = env_float("SWITCHBOARD_WEBHOOK_RETRY_CAP", 3600.0)

# The runner sandbox (dashboard/runtime/sandboxed.py): "bwrap" (bubblewrap) or "none", which
# runs deployed code unsandboxed and is for development only (logged as a WARNING).
SANDBOX = env_str("SWITCHBOARD_SANDBOX", "bwrap")
if SANDBOX not in ("bwrap", "none"):
    raise ImproperlyConfigured(f"SWITCHBOARD_SANDBOX must be bwrap or none, got {SANDBOX!r}")
SANDBOX_BWRAP = env_str("SWITCHBOARD_SANDBOX_BWRAP", "/usr/bin/bwrap")
SANDBOX_SETPRIV = "/usr/bin/setpriv"
# The size of each sandbox's private /tmp (a tmpfs: it is memory, outside RLIMIT_AS).
SANDBOX_SCRATCH_MB = env_int("SWITCHBOARD_SANDBOX_SCRATCH_MB", 256)

# Timeouts and retries of the one outbound HTTP seam (dashboard/httpclient.py).
HTTP_TIMEOUT = env_float("SWITCHBOARD_HTTP_TIMEOUT", 10.0)
HTTP_RETRIES = env_int("SWITCHBOARD_HTTP_RETRIES", 4)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"no_4xx_tracebacks": {"()": "dashboard.web.logs.No4xxTracebacks"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"filters": ["no_4xx_tracebacks"]},
    },
}
