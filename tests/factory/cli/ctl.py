"""Running the installed ``factoryctl`` as a person would: a subprocess with its own config
directory and nothing of the test's environment that could point it somewhere."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import BIN

FACTORYCTL = BIN / "factoryctl"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Ctl:
    """``factoryctl`` with ``XDG_CONFIG_HOME`` in ``home`` (one person's laptop)."""

    def __init__(self, home: Path, url: str | None = None) -> None:
        self.home, self.url = home, url
        home.mkdir(parents=True, exist_ok=True)

    @property
    def config_file(self) -> Path:
        return self.home / "factoryctl" / "config.json"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FACTORY_", "FACTORYCTL_")) and k != "DJANGO_SETTINGS_MODULE"
        }
        env.update(XDG_CONFIG_HOME=str(self.home), COLUMNS="200", **extra)
        return env

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(FACTORYCTL), *args],
            env=self.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = 120, **extra: str
    ) -> Result:
        done = subprocess.run(
            [str(FACTORYCTL), *args],
            env=self.env(**extra),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr  # never, whatever went wrong
        return result

    def login(self, username: str, password: str = "pw") -> Result:
        assert self.url, "a Ctl for a server"
        return self(
            "login", "--url", self.url, "--username", username, "--password-stdin", stdin=password
        )


def finished(process: subprocess.Popen, timeout: float) -> Result:
    out, err = process.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return Result(process.returncode, out, err)
