import json

from django.core.management.base import BaseCommand, CommandError

from factory.inventory.models import Site
from factory.telemetry.layout import site_layout


class Command(BaseCommand):
    help = "Write a site's racks, feeds and UltraServers as JSON for python -m factory.simulator."

    def add_arguments(self, parser):
        parser.add_argument("site", help="site code, e.g. FRA1")
        parser.add_argument("--out", help="file to write (default: stdout)")

    def handle(self, *args, site, out, **options):
        try:
            found = Site.objects.get(code=site)
        except Site.DoesNotExist:
            raise CommandError(f"no site {site!r}") from None
        text = json.dumps(site_layout(found), indent=2)
        if out:
            with open(out, "w") as f:
                f.write(text)
        else:
            self.stdout.write(text)
