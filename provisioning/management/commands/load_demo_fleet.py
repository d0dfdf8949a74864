from django.core.management.base import BaseCommand

from factory.inventory.demo import DEMO_PASSWORD, PEOPLE, load_demo_fleet
from provisioning.demo import load_demo_provisioning, write_demo_images


class Command(BaseCommand):
    help = (
        "Load the demo fleet (two tenants, FRA1 and IAD1, one person per role), its firmware "
        "releases and maintenance windows. Idempotent."
    )

    def handle(self, *args, **options):
        if load_demo_fleet():
            self.stdout.write(self.style.SUCCESS("Demo fleet loaded."))
        else:
            self.stdout.write("Demo fleet already present.")
        load_demo_provisioning()
        write_demo_images()  # the signed demo images, which runfactory serves to the agents
        self.stdout.write(f"Demo people (password '{DEMO_PASSWORD}'):")
        for username, _first, _last, *_, role, tenant in PEOPLE:
            self.stdout.write(f"  {username:<16} {role:<20} {tenant or 'provider'}")
