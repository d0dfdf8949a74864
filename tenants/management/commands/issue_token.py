from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tenants.access import SYSTEM
from tenants.choices import AuditSource, TokenScope
from tenants.errors import Invalid
from tenants.services.changes import ChangeContext
from tenants.services.tokens import MAX_DAYS, issue_token


class Command(BaseCommand):
    help = (
        "Issue an API token for USERNAME and print it (it is stored hashed and shown only now). "
        "An admin tool: people get their own with POST /api/v1/auth/token/ or in the console."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument(
            "--days", type=int, default=None, help=f"1–{MAX_DAYS}; default from settings"
        )
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.WRITE)

    def handle(self, *args, username, name, days, scope, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        try:
            _, clear = issue_token(
                user, ChangeContext(SYSTEM, AuditSource.COMMAND), name=name, scope=scope, days=days
            )
        except Invalid as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(clear)
