"""``factoryctl``: the control plane from a terminal, over its public HTTP API only.

Nothing here imports the control plane (a ``forbidden`` contract in ``pyproject.toml``): the
CLI knows the service only through ``/api/v1/``, as any other client does, so it can run on a
laptop that has neither Django nor a database.
"""
