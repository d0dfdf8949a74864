from django.core.management.base import BaseCommand, CommandError

from tenants.evidence import services
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Verify the hash-chained audit and access-transparency logs against their signed "
        "checkpoints; print each chain and exit 1 naming the first broken link."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="tenant slug or id (default: every chain)")
        parser.add_argument("--checkpoint", action="store_true", help="sign the heads first")

    def handle(self, *args, tenant=None, checkpoint=False, **options):
        scope = None
        if tenant is not None:
            found = Tenant.objects.filter(slug=tenant).first() or (
                Tenant.objects.filter(pk=int(tenant)).first() if tenant.isdigit() else None
            )
            if found is None:
                raise CommandError(f"no tenant {tenant!r}")
            scope = [found.pk]
        if checkpoint:
            services.checkpoint(scope)
        reports = services.verify_logs(scope)
        for r in reports:
            chain = "provider" if r.tenant_id is None else f"tenant {r.tenant_id}"
            verdict = f"BROKEN: {r.problem}" if r.problem else "ok"
            self.stdout.write(
                f"{r.log} {chain}: {r.records} records to seq {r.head_seq}, "
                f"{r.checkpoints} checkpoints: {verdict}"
            )
        broken = [r.problem for r in reports if r.problem]
        if broken:
            raise CommandError(f"first broken link: {broken[0]}")
        self.stdout.write(f"OK: {len(reports)} chains verified")
