"""Check the chip counts the database keeps per server against the chips themselves."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from factory.inventory.services import recount_chips


class Command(BaseCommand):
    help = (
        "Compare each server's kept chip counts (inventory_chipcounts, kept by triggers) with "
        "its chips; exit 1 naming the servers that differ. --fix writes the counted values."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fix", action="store_true", help="write the counted values")

    def handle(self, *args: Any, fix: bool = False, **options: Any) -> None:
        wrong = recount_chips(fix=fix)
        for server_id, kept, counted in wrong:
            self.stdout.write(f"ultraserver {server_id}: kept {kept}, counted {counted}")
        if wrong and not fix:
            raise CommandError(f"{len(wrong)} servers' chip counts differ from their chips")
        verb = "fixed" if fix else "differ"
        self.stdout.write(f"chip counts: {len(wrong)} servers {verb}")
