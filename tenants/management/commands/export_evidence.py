import datetime as dt
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenants.errors import Conflict
from tenants.evidence import services
from tenants.models import Tenant


def _when(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"not an ISO 8601 date or time: {value!r}") from exc
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = (
        "Write a tenant's signed evidence pack for [--from, --to) to a zip; check it offline "
        "with `python tenants/ledger/verify_pack.py PACK`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug or id")
        parser.add_argument("--from", dest="start", required=True, help="ISO 8601, inclusive")
        parser.add_argument("--to", dest="end", required=True, help="ISO 8601, exclusive")
        parser.add_argument("--output", "-o", help="default: evidence-<tenant>-<from>-<to>.zip")

    def handle(self, *args, tenant, start, end, output=None, **options):
        found = Tenant.objects.filter(slug=tenant).first() or (
            Tenant.objects.filter(pk=int(tenant)).first() if tenant.isdigit() else None
        )
        if found is None:
            raise CommandError(f"no tenant {tenant!r}")
        begin, finish = _when(start), _when(end)
        if finish <= begin:
            raise CommandError("--to must be after --from")
        path = Path(output or f"evidence-{found.slug}-{begin:%Y%m%d}-{finish:%Y%m%d}.zip")
        try:
            pack = services.export_evidence(found, begin, finish)
        except Conflict as exc:  # a broken chain: no pack, the first broken link named
            raise CommandError(str(exc)) from exc
        path.write_bytes(pack)
        self.stdout.write(f"wrote {path}")
