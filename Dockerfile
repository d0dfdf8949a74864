# Two images from one file.
#
# `site` (docker build --target site): what runs at a customer's site, without the control
# plane: the site agent and the simulated site hardware. Nothing but the wire contract
# (factory/wire.py), their own code, and their three dependencies; no Django, no secrets.
FROM python:3.11-slim AS site

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# The same version ranges as pyproject.toml's (a test keeps them equal).
RUN pip install "cryptography>=44,<51" "requests>=2.32,<3" "urllib3>=2.2,<3" \
    && useradd --system --home /app site \
    && mkdir -p /sim /var/lib/agent && chown site /sim /var/lib/agent
# (/sim and /var/lib/agent: the simulated site's layout and the site agent's outbox, as volumes)
COPY factory/__init__.py factory/wire.py factory/
COPY factory/siteagent factory/siteagent
COPY factory/simulator factory/simulator
USER site

CMD ["python", "-m", "factory.siteagent", "--help"]


# The control plane image (the default: the last stage): web (gunicorn), Celery worker and beat
# all run from it, and so do the compose file's one-shot migrate and site setup.
FROM python:3.11-slim AS control-plane

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY factory factory
COPY tenants tenants
COPY provisioning provisioning
COPY manage.py ./
RUN pip install . \
    && DJANGO_SETTINGS_MODULE=factory.settings.base python manage.py collectstatic --noinput -v0 \
    && useradd --system --home /app factory \
    && mkdir -p /sim && chown factory /sim
# (/sim: where the site setup writes the simulated site's layout and agent credential)
USER factory

EXPOSE 8000
# gthread: each event watch stream (server-sent events) holds a thread, not a whole worker.
# Liveness outside the request threads on WEB_HEALTH_PORT, when set (factory.core.gunicorn_conf).
CMD ["gunicorn", "factory.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", \
     "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-", \
     "-c", "python:factory.core.gunicorn_conf"]
