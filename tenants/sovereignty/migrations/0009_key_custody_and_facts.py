# Issue 14 (key custody and provider facts). Written by hand: only this helper's operations go here.

import django.core.validators
import django.db.models.deletion
import django_countries.fields
from django.db import migrations, models

#: The beat row that applies provider fact changes once their notice has run out.
FACT_JOB = ("sovereignty fact changes", "tenants.sovereignty.apply_fact_changes", 60)


def install_job(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds = FACT_JOB
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": every, "enabled": True}
    )


def uninstall_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=FACT_JOB[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0008_trust_roots"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="ExternalKeyStore",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        max_length=64,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$",
                                "letters, digits and _ . : / - (at most 64), starting with a letter or digit",
                                code="invalid_name",
                            )
                        ],
                    ),
                ),
                (
                    "endpoint_url",
                    models.URLField(help_text="The store's XKS proxy endpoint.", max_length=300),
                ),
                (
                    "country",
                    django_countries.fields.CountryField(
                        help_text="Where the store (its HSMs) is, ISO 3166-1 alpha-2.", max_length=2
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("connected", "Connected"), ("disconnected", "Disconnected")],
                        default="connected",
                        max_length=16,
                    ),
                ),
                ("state_changed_at", models.DateTimeField(blank=True, null=True)),
                ("state_changed_by", models.CharField(blank=True, max_length=150)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="FactChangeNotice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "flips",
                    models.JSONField(
                        default=list, help_text='Each {"subject", "id", "name", "becomes"}.'
                    ),
                ),
                ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                ("acknowledged_by", models.CharField(blank=True, max_length=150)),
            ],
            options={
                "ordering": ["-change__created_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="PendingFactChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "subject_type",
                    models.CharField(
                        choices=[("site", "Site"), ("person", "Person")], max_length=8
                    ),
                ),
                ("subject_id", models.CharField(max_length=64)),
                ("subject_repr", models.CharField(max_length=200)),
                ("before", models.JSONField(help_text="The facts it changes, as they are now.")),
                ("after", models.JSONField(help_text="The same facts, as they will be.")),
                ("requested_by", models.CharField(max_length=150)),
                ("request_id", models.CharField(blank=True, max_length=64)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("effective_at", models.DateTimeField()),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("applied", "Applied")],
                        default="pending",
                        max_length=8,
                    ),
                ),
                ("applied_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.AddField(
            model_name="externalkeystore",
            name="sites",
            field=models.ManyToManyField(
                blank=True,
                help_text="The tenant's sites whose assets are encrypted under this store's keys.",
                related_name="external_key_stores",
                to="inventory.site",
            ),
        ),
        migrations.AddField(
            model_name="externalkeystore",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="key_stores",
                to="tenants.tenant",
            ),
        ),
        migrations.AddField(
            model_name="factchangenotice",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="fact_notices",
                to="tenants.tenant",
            ),
        ),
        migrations.AddConstraint(
            model_name="pendingfactchange",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "pending")),
                fields=("subject_type", "subject_id"),
                name="one_pending_fact_change_per_subject",
            ),
        ),
        migrations.AddField(
            model_name="factchangenotice",
            name="change",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="notices",
                to="sovereignty.pendingfactchange",
            ),
        ),
        migrations.AddConstraint(
            model_name="externalkeystore",
            constraint=models.UniqueConstraint(
                fields=("tenant", "name"), name="key_store_name_per_tenant"
            ),
        ),
        migrations.AddConstraint(
            model_name="factchangenotice",
            constraint=models.UniqueConstraint(
                fields=("change", "tenant"), name="one_notice_per_tenant"
            ),
        ),
        migrations.RunPython(install_job, uninstall_job),
    ]
