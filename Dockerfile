# The control plane image: web (gunicorn), Celery worker and beat all run from it; so do the
# simulated site hardware and the site agent of the compose file's demo site.
FROM python:3.11-slim

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
    && mkdir -p /sim /var/lib/agent && chown factory /sim /var/lib/agent
# (/sim and /var/lib/agent: the simulated site's layout and the site agent's outbox, as volumes)
USER factory

EXPOSE 8000
CMD ["gunicorn", "factory.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
