"""``manage.py import_fabric SITE FILE`` replaces a site's EFA fabric with a JSON document (the
format of ``factory.inventory.fabric``); ``--export`` writes the current one instead."""

import json
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from factory.inventory import fabric
from factory.inventory.models import Site
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext


class Command(BaseCommand):
    help = "Replace a site's EFA fabric from a JSON file (or write it out with --export)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("site", help="site code, e.g. FRA1")
        parser.add_argument("file", help="the fabric JSON ('-' for stdin/stdout)")
        parser.add_argument(
            "--export", action="store_true", help="write the site's fabric to FILE instead"
        )

    def handle(self, *args: Any, site: str, file: str, export: bool, **options: Any) -> None:
        try:
            found = Site.objects.get(code=site)
        except Site.DoesNotExist:
            raise CommandError(f"no site {site!r}") from None
        if export:
            text = json.dumps(fabric.export_fabric(found), indent=2) + "\n"
            if file == "-":
                self.stdout.write(text, ending="")
            else:
                with open(file, "w") as f:
                    f.write(text)
            return
        try:
            if file == "-":
                document = json.load(sys.stdin)
            else:
                with open(file) as f:
                    document = json.load(f)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            stored = fabric.replace_fabric(
                found, document, ChangeContext(SYSTEM, AuditSource.COMMAND)
            )
        except ValidationError as exc:
            lines = [
                f"{path}: {error.message} [{error.code}]"
                for path, errors in exc.error_dict.items()
                for error in errors
            ]
            raise CommandError("the fabric is not valid:\n  " + "\n  ".join(lines)) from None
        self.stdout.write(
            f"{found.code}: {len(stored['nodes'])} nodes, "
            f"{len(stored['attachments'])} servers attached"
        )
