from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from factory.inventory.choices import FeedPath, Phase
from factory.inventory.models.locking import lock_capacity_scope
from factory.inventory.power import (
    FeedCapacity,
    feed_capacity_watts,
    kw,
    protected_budget,
    shrink_shortfall,
)


class PowerFeed(models.Model):
    """One power feed (whip) into a rack, on path A or B."""

    rack = models.ForeignKey("inventory.Rack", on_delete=models.PROTECT, related_name="power_feeds")
    name = models.CharField(max_length=64, help_text="e.g. FRA1-R03-A1")
    path = models.CharField(max_length=1, choices=FeedPath.choices)
    voltage = models.PositiveIntegerField(
        validators=[MinValueValidator(100), MaxValueValidator(1000)]
    )
    amperage = models.DecimalField(
        max_digits=6,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("1")), MaxValueValidator(Decimal("2000"))],
    )
    phase = models.CharField(max_length=8, choices=Phase.choices, default=Phase.THREE)
    max_utilization_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("80"),
        validators=[MinValueValidator(Decimal("1")), MaxValueValidator(Decimal("100"))],
        help_text="Share of the breaker rating that may be used (80 % by electrical code).",
    )
    power_factor = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.95"),
        validators=[MinValueValidator(Decimal("0.5")), MaxValueValidator(Decimal("1"))],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    #: The ratings ``capacity_watts`` is computed from, as the admin and the API show them.
    RATINGS = ("voltage", "amperage", "phase", "max_utilization_percent", "power_factor")

    class Meta:
        ordering = ["rack__name", "path", "name"]
        constraints = [
            models.UniqueConstraint(fields=["rack", "name"], name="feed_name_unique_in_rack"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.rack.site.tenant_id if self.rack_id else None

    @property
    def capacity_watts(self) -> float:
        return feed_capacity_watts(
            self.voltage,
            self.amperage,
            self.phase == Phase.THREE,
            self.max_utilization_percent,
            self.power_factor,
        )

    def lock_for_change(self) -> None:
        rack_ids = {self.rack_id}
        site_ids = set()
        if self.pk:
            stored = (
                type(self)
                .objects.filter(pk=self.pk)
                .values_list("rack_id", "rack__site_id")
                .first()
            )
            if stored:
                rack_ids.add(stored[0])
                site_ids.add(stored[1])
        if self.rack_id:
            site_ids.add(self.rack.site_id)
        lock_capacity_scope(site_ids=site_ids, rack_ids=rack_ids)

    def clean(self) -> None:
        """Refuse a change that would leave a rack's load above its protected budget (for the
        rack it leaves, too, when the feed moves)."""
        if (
            None in (self.voltage, self.amperage, self.max_utilization_percent, self.power_factor)
            or not self.rack_id
        ):
            return
        self.lock_for_change()
        old_rack = None
        if self.pk:
            old_rack = (
                type(self).objects.filter(pk=self.pk).values_list("rack_id", flat=True).first()
            )
        if old_rack and old_rack != self.rack_id:
            # Moving the feed: the rack it leaves loses it; the rack it joins gains it.
            problem = budget_problem_without(self, replacement=None, rack_id=old_rack)
        else:
            problem = budget_problem_without(self, replacement=self)
        if problem:
            code, message = problem
            raise ValidationError({"rack": ValidationError(message, code=code)})


def budget_problem_without(
    feed: PowerFeed, replacement: PowerFeed | None, rack_id: int | None = None
) -> tuple[str, str] | None:
    """What goes wrong with the rack if ``feed`` is replaced by ``replacement`` (or removed, when
    None): (code, message), or None. A loaded rack may neither exceed its protected budget nor
    silently lose its A+B redundancy."""
    from factory.inventory.models import Rack
    from factory.inventory.selectors import committed_watts

    rack_id = rack_id or feed.rack_id
    committed = committed_watts(rack_id=rack_id)
    if committed == 0:
        return None
    others = PowerFeed.objects.filter(rack=rack_id)
    if feed.pk:
        others = others.exclude(pk=feed.pk)
    capacities = [FeedCapacity(f.path, f.capacity_watts) for f in others]
    current = PowerFeed.objects.filter(rack=rack_id)
    had_redundancy = protected_budget(
        FeedCapacity(f.path, f.capacity_watts) for f in current
    ).redundant
    if replacement is not None:
        capacities.append(FeedCapacity(replacement.path, replacement.capacity_watts))
    name = Rack.objects.filter(pk=rack_id).values_list("name", flat=True).first()
    budget = protected_budget(capacities)
    if had_redundancy and not budget.redundant:
        return (
            "rack_redundancy_lost",
            f"rack {name} would lose its A+B redundancy while it carries {kw(committed)}",
        )
    problem = shrink_shortfall(f"rack {name} power budget", budget.watts, committed)
    return ("rack_power_budget_exceeded", problem) if problem else None
