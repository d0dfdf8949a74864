"""``factoryctl``: the entry point. Every failure ends in a sentence and an exit code, never a
traceback (``FACTORYCTL_DEBUG=1`` shows one for an unexpected error)."""

from __future__ import annotations

import os
import sys

import click

from factory.cli import auth, config, decisions, events, resources, workflows
from factory.cli.client import ApiError, Unreachable
from factory.cli.output import format_error
from factory.cli.session import EXIT_REFUSED, EXIT_UNREACHABLE, Session

EPILOG = """\b
Exit codes: 0 done; 1 refused by the API, a watched workflow failed or was
cancelled, or an evaluated action is denied; 2 bad usage; 3 the server did
not answer; 4 gave up waiting (--timeout).
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url", envvar="FACTORY_URL", help="The control plane (else FACTORY_URL, else the login's)."
)
@click.option(
    "--token", envvar="FACTORY_TOKEN", help="An API token (else FACTORY_TOKEN, else the login's)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@click.version_option("0.1.0", prog_name="factoryctl")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, timeout: float) -> None:
    """The AI factory control plane, from a terminal (over its public API only).

    \b
    First calls:
      factoryctl login --url http://127.0.0.1:8000 --username anna.schneider
      factoryctl get sites
      factoryctl get ultraservers -f site=FRA1 -o yaml
      factoryctl workflow start upgrade --site FRA1 -p firmware_version=2026.11.1 --watch
    """
    ctx.obj = Session(url_option=url, token_option=token, timeout=timeout)


for command in (
    auth.login,
    auth.logout,
    auth.whoami,
    resources.list_resources,
    resources.get,
    resources.show,
    workflows.workflow,
    events.events,
    decisions.access,
    decisions.window,
    decisions.sovereignty,
):
    cli.add_command(command)


def _fail(lines: list[str], code: int) -> int:
    click.echo(f"Error: {lines[0]}", err=True)
    for extra in lines[1:]:
        click.echo(extra, err=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """The CLI's exit code for ``argv`` (the process's arguments if None)."""
    try:
        result = cli.main(args=argv, prog_name="factoryctl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except ApiError as exc:
        lines = format_error(exc.status or None, exc.code, exc.message, exc.errors)
        if exc.status == 401:
            lines.append("  (log in: factoryctl login --url URL, or pass --token)")
        if exc.retry_after:
            lines.append(f"  (try again in {exc.retry_after} s)")
        return _fail(lines, EXIT_REFUSED)
    except Unreachable as exc:
        return _fail([str(exc)], EXIT_UNREACHABLE)
    except config.ConfigError as exc:
        return _fail([str(exc)], EXIT_REFUSED)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("FACTORYCTL_DEBUG"):
            raise
        lines = [f"unexpected {type(exc).__name__}: {exc}", "  (FACTORYCTL_DEBUG=1 shows where)"]
        return _fail(lines, EXIT_REFUSED)
    return result if isinstance(result, int) else 0


def main() -> None:
    code = run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # `factoryctl get ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    main()
