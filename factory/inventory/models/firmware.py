from __future__ import annotations

from django.db import models

from factory import wire

FirmwareComponentChoice = models.TextChoices(
    "FirmwareComponentChoice", [(c.name, (c.value, c.value)) for c in wire.FirmwareComponent]
)


class ComponentFirmware(models.Model):
    """The firmware version one component of an UltraServer last reported (its BMC's
    UpdateService/FirmwareInventory, read back with a command's hardware state). A reading,
    not a change anyone made: written as it arrives, not audited."""

    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.CASCADE, related_name="firmware_components"
    )
    component = models.CharField(max_length=24, choices=FirmwareComponentChoice.choices)
    version = models.CharField(max_length=64)
    observed_at = models.DateTimeField()

    class Meta:
        ordering = ["ultraserver_id", "component"]
        constraints = [
            models.UniqueConstraint(
                fields=["ultraserver", "component"], name="firmware_one_row_per_component"
            )
        ]

    def __str__(self) -> str:
        return f"{self.ultraserver_id} {self.component} {self.version}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.ultraserver.owning_tenant_id
