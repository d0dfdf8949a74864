"""``login``, ``logout`` and ``whoami``: a token of your own, kept in the config file."""

from __future__ import annotations

import socket
import sys

import click

from factory.cli import config as configfile
from factory.cli.client import Client, normalize_url
from factory.cli.session import Session, note, pass_session


def _url(session: Session, given: str | None) -> str:
    url = given or session.url_option or session.config().url
    if not url:
        raise click.UsageError("which server? factoryctl login --url http://HOST:PORT")
    try:
        return normalize_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None


@click.command()
@click.option("--url", help="The control plane, e.g. http://127.0.0.1:8000 (else FACTORY_URL).")
@click.option("--username", "-u", help="Your username (asked for if left out).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--token-stdin",
    is_flag=True,
    help="Store an API token you already have (read from standard input) instead.",
)
@click.option(
    "--scope",
    type=click.Choice(["read", "write"]),
    default="write",
    show_default=True,
    help="What the new token may do.",
)
@click.option("--days", type=click.IntRange(1, 366), help="Days until it expires (API default).")
@click.option("--name", "token_name", help="The token's name (default factoryctl@HOST).")
@pass_session
def login(
    session: Session,
    url: str | None,
    username: str | None,
    password_stdin: bool,
    token_stdin: bool,
    scope: str,
    days: int | None,
    token_name: str | None,
) -> None:
    """Log in: exchange your username and password for an API token (POST /api/v1/auth/token/)
    and keep it, with the URL, in the config file (mode 0600)."""
    base = _url(session, url)
    if token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise click.UsageError("no token on standard input")
        Client(base, token, timeout=session.timeout).get("tokens/", {"limit": 1})  # 401 if bad
        configfile.save(session.config_file, configfile.Config(url=base, token=token))
        note(f"Stored the token for {base} in {session.config_file}")
        return
    if not username:
        username = click.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True)
    body: dict[str, object] = {
        "username": username,
        "password": password,
        "name": token_name or f"factoryctl@{socket.gethostname()}"[:100],
        "scope": scope,
    }
    if days:
        body["days"] = days
    issued = Client(base, timeout=session.timeout).post("auth/token/", body)
    configfile.save(
        session.config_file,
        configfile.Config(
            url=base,
            token=issued["token"],
            username=username,
            token_id=issued.get("id"),
            expires_at=str(issued.get("expires_at") or ""),
        ),
    )
    expires = f", expires {issued['expires_at']}" if issued.get("expires_at") else ""
    note(f"Logged in to {base} as {username} ({issued.get('scope', scope)} token{expires}).")


@click.command()
@click.option("--keep", is_flag=True, help="Forget the token here but do not revoke it.")
@pass_session
def logout(session: Session, keep: bool) -> None:
    """Revoke the stored token (DELETE /api/v1/tokens/{id}/) and forget it."""
    stored = session.config()
    if not stored.token:
        note("Not logged in.")
        return
    if not keep and stored.token_id is not None:
        Client(stored.url, stored.token, timeout=session.timeout).delete(
            f"tokens/{stored.token_id}/"
        )
    configfile.forget_token(session.config_file)
    note("Logged out." if keep or stored.token_id is None else "Token revoked; logged out.")


@click.command()
@pass_session
def whoami(session: Session) -> None:
    """The server, the person and the token this CLI uses (and that the token still works)."""
    url, token = session.server()
    stored = session.config()
    if not token:
        raise click.UsageError(f"no token for {url}: factoryctl login --url {url}")
    session.client().get("tokens/", {"limit": 1})
    who = stored.username if stored.token == token and stored.username else "(token given)"
    expires = f", token expires {stored.expires_at}" if stored.token == token else ""
    click.echo(f"{who} at {url}{expires}")
