from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class NetworkNode(models.Model):
    """A switch of a site's EFA fabric (for example a spine at layer 1, a leaf at layer 2).

    The fabric is a tree per site: each node but the top ones has a parent one layer up.
    An UltraServer hangs under its lowest node (``UltraServer.network_node``); the UltraServer
    itself is the last layer (its NeuronSwitch / NVLink domain), so it is not a node here.
    Distances and lowest common nodes are computed by the pure core
    ``factory.inventory.topology``; tenants see these nodes only as per-tenant hashes."""

    #: API filters on a relation to this model take an id or this (tenants.filters).
    natural_key_field = "name"

    site = models.ForeignKey(
        "inventory.Site", on_delete=models.CASCADE, related_name="network_nodes"
    )
    name = models.CharField(max_length=64, help_text="e.g. FRA1-SPINE-1, FRA1-LEAF-03")
    layer = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(8)],
        help_text="1 = the top of the fabric; each layer down adds one.",
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The node one layer up; empty only at layer 1.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site_id", "layer", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "name"], name="network_node_name_unique_in_site"
            ),
            models.CheckConstraint(
                condition=models.Q(layer=1, parent__isnull=True)
                | models.Q(layer__gt=1, parent__isnull=False),
                name="network_node_parent_iff_below_top",
                violation_error_message="a node has a parent exactly when it is below layer 1",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        """None: a switch is the provider's, even on a tenant's premises. Its changes go to the
        provider's audit log and only provider roles may write it; a tenant never reads its
        name (it sees per-tenant hashes, in ``instance-topology/``)."""
        return None

    def clean(self) -> None:
        self._refuse_below_servers()
        if self.layer == 1 and self.parent_id is not None:
            raise ValidationError(
                {"parent": ValidationError("a layer-1 node has no parent", code="top_has_parent")}
            )
        if self.layer and self.layer > 1 and self.parent_id is None:
            raise ValidationError(
                {
                    "parent": ValidationError(
                        "a node below layer 1 needs a parent", code="parent_required"
                    )
                }
            )
        if self.parent_id is not None and self.parent is not None:
            if self.parent.site_id != self.site_id:
                raise ValidationError(
                    {
                        "parent": ValidationError(
                            "the parent is at another site", code="parent_other_site"
                        )
                    }
                )
            if self.layer and self.parent.layer != self.layer - 1:
                raise ValidationError(
                    {
                        "parent": ValidationError(
                            f"the parent is at layer {self.parent.layer}; a layer-{self.layer} "
                            f"node hangs under layer {self.layer - 1}",
                            code="parent_layer",
                        )
                    }
                )

    def _refuse_below_servers(self) -> None:
        """Servers hang under the site's lowest layer: a node below it, while servers hang
        there, would leave them above the bottom (``factory.inventory.fabric``)."""
        if not (self.site_id and self.layer):
            return
        others = NetworkNode.objects.filter(site_id=self.site_id).exclude(pk=self.pk)
        deepest = others.aggregate(m=models.Max("layer"))["m"] or 0
        if self.layer > deepest and others.filter(ultraservers__isnull=False).exists():
            raise ValidationError(
                {
                    "layer": ValidationError(
                        f"servers hang under layer {deepest} of this site; a node at layer "
                        f"{self.layer} would put them above the bottom: re-attach them with "
                        "the fabric import",
                        code="below_servers",
                    )
                }
            )
