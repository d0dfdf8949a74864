from django.core.management.base import BaseCommand, CommandError

from factory.agents.models import SiteAgent
from factory.agents.services import issue_agent, revoke_agent
from factory.inventory.models import Site
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext


class Command(BaseCommand):
    help = "Issue a site agent credential (printed once). --replace revokes the agent's old one."

    def add_arguments(self, parser):
        parser.add_argument("site", help="site code, e.g. FRA1")
        parser.add_argument("--name", default="site-agent")
        parser.add_argument("--replace", action="store_true")

    def handle(self, *args, site, name, replace, **options):
        ctx = ChangeContext(SYSTEM, AuditSource.COMMAND)
        try:
            found = Site.objects.get(code=site)
        except Site.DoesNotExist:
            raise CommandError(f"no site {site!r}") from None
        existing = SiteAgent.objects.filter(site=found, name=name).first()
        if existing is not None:
            if not replace:
                raise CommandError(f"{site} already has an agent {name!r}; use --replace")
            if existing.revoked_at is None:
                revoke_agent(existing, ctx)
            # Keep the revoked credential on record (its commands point at it) under another name.
            SiteAgent.objects.filter(pk=existing.pk).update(name=f"{name}-revoked-{existing.pk}")
        _, clear = issue_agent(found, name, ctx)
        self.stdout.write(clear)
