# The MedAI Platform image: the web tier (default command), Celery workers and beat, the migration
# Job, and the Triton model repository at /opt/medai/models (copied into Triton by the chart).
#   docker build -t registry.medai.example.ru/medai/platform:0.1.0 .
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install . \
    && mkdir -p /opt/medai/models \
    && cp -RL inference/models/*/ /opt/medai/models/ \
    && find /opt/medai/models -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11-slim
RUN groupadd --system --gid 10001 medai \
    && useradd --system --uid 10001 --gid medai --home-dir /var/lib/medai --no-create-home \
       --shell /usr/sbin/nologin medai \
    && install -d -o medai -g medai /var/lib/medai
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/medai/models /opt/medai/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=medai.settings \
    MEDAI_HOME=/var/lib/medai
USER 10001:10001
WORKDIR /var/lib/medai
EXPOSE 8000
# SIGTERM: gunicorn stops accepting and finishes requests in flight (graceful_timeout);
# Celery workers finish their tasks (warm shutdown).
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "python:medai.gunicorn_conf"]
