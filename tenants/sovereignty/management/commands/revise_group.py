"""The provider's path to a built-in group's next version (EU gains a member state, say)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext
from tenants.sovereignty.models import JurisdictionGroup
from tenants.sovereignty.services import revise_group


class Command(BaseCommand):
    help = (
        "Publish the next version of a built-in jurisdiction group. Active rules keep the "
        "version they pinned until their tenant re-activates them; every tenant whose rules "
        "name the group finds the change in its audit log."
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="e.g. EU")
        parser.add_argument("countries", nargs="+", help="ISO 3166-1 alpha-2 codes, all of them")
        parser.add_argument("--name", default=None)

    def handle(self, code, countries, name, **options):
        group = JurisdictionGroup.objects.filter(tenant__isnull=True, code=code).first()
        if group is None:
            raise CommandError(f"no built-in group {code!r}")
        try:
            group = revise_group(group, countries, ChangeContext(SYSTEM, AuditSource.COMMAND), name)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(
            f"{group.code} is now version {group.version}: {' '.join(group.countries)}"
        )
