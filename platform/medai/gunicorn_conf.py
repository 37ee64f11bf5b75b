"""gunicorn's settings for the web tier: `gunicorn -c python:medai.gunicorn_conf`.

Every number comes from the environment (the chart sets them) with a default fit for one pod.
Shutdown is graceful: on SIGTERM gunicorn stops accepting, lets requests in flight (a STOW of
1.5 GiB among them) finish for up to GUNICORN_GRACEFUL_TIMEOUT seconds, then exits. The pod's
terminationGracePeriodSeconds must exceed the preStop pause plus that timeout.
"""

import os

wsgi_app = "medai.wsgi:application"
bind = [os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")]

# Threads, not processes, carry the concurrency: STOW requests mostly wait on the network and the
# object store. WEB_CONCURRENCY is gunicorn's own convention for the number of processes.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))

# A worker silent this long is killed: it must cover the slowest STOW upload.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "60"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))  # above the load balancer's idle timeout

# Recycle workers now and then, jittered so they do not all restart together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = max_requests // 10

# The heartbeat file on tmpfs: a disk-backed /tmp can stall it and get healthy workers killed.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else None)
# gunicorn >= 24 opens a control socket under $HOME; the container's root filesystem is read-only.
control_socket_disable = True

# Behind the Ingress: trust X-Forwarded-* from the cluster network only (the chart sets the CIDRs).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# No query strings in the access log: QIDO queries can carry patient names and ids.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
