"""Record each UltraServer model's physical layout: chips per compute tray (HARDWARE.md: Trn3
36 trays × 4 chips, Trn2 16 × 4, GB300 NVL72 18 × 4), so the console draws chips as they sit."""

from django.db import migrations, models

CHIPS_PER_TRAY = {"trn3-ultraserver": 4, "trn2-ultraserver": 4, "gb300-nvl72": 4}


def record(apps, schema_editor):
    UltraServerModel = apps.get_model("catalog", "UltraServerModel")
    for slug, per in CHIPS_PER_TRAY.items():
        UltraServerModel.objects.filter(slug=slug).update(chips_per_tray=per)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_seed_hardware")]
    operations = [
        migrations.AddField(
            model_name="ultraservermodel",
            name="chips_per_tray",
            field=models.PositiveSmallIntegerField(
                default=4,
                help_text="Accelerator chips per compute tray; chip i sits in tray i // "
                "chips_per_tray.",
            ),
        ),
        migrations.RunPython(record, migrations.RunPython.noop),
        migrations.AlterModelOptions(
            name="ultraservermodel",
            options={
                "ordering": ["name"],
                "verbose_name": "UltraServer model",
                "verbose_name_plural": "UltraServer models",
            },
        ),
    ]
