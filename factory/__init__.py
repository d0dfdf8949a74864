"""The AI factory control plane: Django project and the physical plant.

The Celery app is loaded by ``factory.core`` when Django starts (and by ``celery -A factory``),
not on import of this package: ``factory.simulator`` and ``factory.siteagent`` run at a site,
without Django, and must not drag it in.
"""


def __getattr__(name: str):
    if name == "celery_app":
        from factory.celery import app

        return app
    raise AttributeError(name)
