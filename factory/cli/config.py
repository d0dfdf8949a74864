"""Where ``factoryctl login`` keeps the server's URL and the token: one JSON file only its owner
reads (``$XDG_CONFIG_HOME/factoryctl/config.json``, mode 0600). ``--url``/``FACTORY_URL`` and
``--token``/``FACTORY_TOKEN`` override it, in that order."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


class ConfigError(Exception):
    """The config file exists but cannot be read as one."""


@dataclass
class Config:
    url: str = ""
    token: str = ""
    username: str = ""
    token_id: int | None = None
    expires_at: str = ""


def config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("FACTORYCTL_CONFIG"):
        return Path(env["FACTORYCTL_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "factoryctl" / "config.json"


def load(path: Path) -> Config:
    """The stored config; an empty one if there is no file yet."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{path} is not JSON; log in again to rewrite it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; log in again to rewrite it")
    known = {k: v for k, v in data.items() if k in Config.__dataclass_fields__}
    return Config(**known)


def save(path: Path, config: Config) -> None:
    """Write ``config`` readable by its owner alone: created 0600 (never world-readable, not
    even for a moment), its directory 0700, replaced atomically."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), FILE_MODE)  # whatever the umask
            json.dump(asdict(config), out, indent=2)
            out.write("\n")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def forget_token(path: Path) -> Config:
    """Drop the stored token (the URL stays, for the next log-in)."""
    config = load(path)
    config.token, config.token_id, config.expires_at = "", None, ""
    if path.exists():
        save(path, config)
    return config
