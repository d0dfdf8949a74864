# Issue 14 (lockbox). Written by hand: only this helper's operations go here.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import tenants.sovereignty.models.access

EXPIRE_JOB = ("lockbox: expire access requests", "tenants.sovereignty.expire_access_requests", 60)

SCOPES = [
    ("physical_repair", "Physical repair on site"),
    ("remote_hands", "Remote hands"),
    ("firmware", "Firmware"),
    ("read_diagnostics", "Read diagnostics"),
]
APPROVALS = [
    ("pre_approved", "Pre-approved"),
    ("one", "One tenant admin"),
    ("n_of_m", "N of M named tenant admins"),
    ("never", "Never"),
]
JUSTIFICATIONS = [
    ("customer_support", "Customer-initiated support"),
    ("provider_maintenance", "Provider maintenance"),
    ("production_alert", "Response to a production alert"),
    ("security_incident", "Security incident"),
    ("legal_request", "Legal or third-party request"),
    ("safety_hazard", "Safety hazard on the premises"),
]
STATUSES = [
    ("pending", "Pending"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("expired", "Expired (unanswered)"),
    ("revoked", "Revoked by the tenant"),
    ("ended", "Ended"),
]


def install_job(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds = EXPIRE_JOB
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": every, "enabled": True}
    )


def uninstall_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=EXPIRE_JOB[0]).delete()


def user_fk(**kwargs):
    return models.ForeignKey(
        on_delete=django.db.models.deletion.PROTECT, to=settings.AUTH_USER_MODEL, **kwargs
    )


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0006_group_versions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AccessApproval",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("approve", models.BooleanField()),
                ("note", models.CharField(blank=True, max_length=500)),
                ("decided_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("approver", user_fk(related_name="+")),
                (
                    "request",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="votes",
                        to="sovereignty.accessrequest",
                    ),
                ),
            ],
            options={"ordering": ["decided_at", "id"]},
        ),
        migrations.AddConstraint(
            model_name="accessapproval",
            constraint=models.UniqueConstraint(
                fields=("request", "approver"), name="one_vote_per_approver"
            ),
        ),
        migrations.CreateModel(
            name="AccessUse",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant_id", models.BigIntegerField(db_index=True)),
                ("site_id", models.BigIntegerField()),
                ("occurred_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("scope", models.CharField(choices=SCOPES, max_length=20)),
                ("office_country", models.CharField(blank=True, max_length=2)),
                ("physical_country", models.CharField(blank=True, max_length=2)),
                ("workflow_id", models.BigIntegerField(blank=True, null=True)),
                ("step", models.CharField(blank=True, max_length=40)),
                ("allowed", models.BooleanField()),
                ("reason", models.CharField(blank=True, max_length=500)),
                ("person", user_fk(related_name="+")),
                (
                    "request",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="uses",
                        to="sovereignty.accessrequest",
                    ),
                ),
            ],
            options={"ordering": ["-occurred_at", "-id"]},
        ),
        migrations.CreateModel(
            name="LockboxPolicy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "entries",
                    models.JSONField(
                        blank=True,
                        default=tenants.sovereignty.models.access._default_entries,
                        help_text="(justification, scope) → approval: a list of {justification,"
                        " scope, approval, n, approvers}; '*' matches any; the most specific "
                        "entry wins.",
                    ),
                ),
                (
                    "default_approval",
                    models.CharField(choices=APPROVALS, default="one", max_length=12),
                ),
                (
                    "emergency_codes",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="Justifications for which break-glass is allowed.",
                    ),
                ),
                (
                    "break_glass_minutes",
                    models.PositiveSmallIntegerField(
                        default=60,
                        help_text="How long a break-glass use lasts, in minutes (at most 240).",
                    ),
                ),
                (
                    "answer_within_minutes",
                    models.PositiveIntegerField(
                        default=1440, help_text="A request unanswered this long expires."
                    ),
                ),
                (
                    "physical_in_site_country",
                    models.BooleanField(
                        default=True,
                        help_text="The person must physically be in the site's country.",
                    ),
                ),
                (
                    "office_countries",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="Offices the person may work from (empty: any).",
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "tenant",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="lockbox_policy",
                        to="tenants.tenant",
                    ),
                ),
            ],
            options={"verbose_name_plural": "lockbox policies"},
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="answer_by",
            field=models.DateTimeField(
                blank=True, help_text="Unanswered by then, the request expires.", null=True
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="approval",
            field=models.CharField(choices=APPROVALS, default="one", editable=False, max_length=12),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="approvals_needed",
            field=models.PositiveSmallIntegerField(default=1, editable=False),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="approvers",
            field=models.JSONField(
                blank=True,
                default=list,
                editable=False,
                help_text="N of M: the M admins' user ids.",
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="break_glass",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="close_note",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="closed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="closed_by",
            field=user_fk(blank=True, null=True, related_name="+"),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="extends",
            field=models.ForeignKey(
                blank=True,
                help_text="The grant this request would extend (from its end, approved again).",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="extensions",
                to="sovereignty.accessrequest",
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="justification",
            field=models.CharField(
                choices=JUSTIFICATIONS, default="provider_maintenance", max_length=24
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="office_country",
            field=models.CharField(
                blank=True, help_text="The country of the person's office (ISO 3166).", max_length=2
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="physical_country",
            field=models.CharField(
                blank=True,
                help_text="Where the person will physically be at the time of access (ISO 3166).",
                max_length=2,
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="review_note",
            field=models.CharField(blank=True, max_length=1000),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="reviewed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="reviewed_by",
            field=user_fk(blank=True, null=True, related_name="+"),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="scope",
            field=models.CharField(
                choices=SCOPES,
                default="physical_repair",
                help_text="What the person may do under this grant.",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="accessrequest",
            name="status",
            field=models.CharField(choices=STATUSES, default="pending", max_length=10),
        ),
        migrations.AddIndex(
            model_name="accessrequest",
            index=models.Index(
                fields=["person", "site", "status"], name="access_person_site_status"
            ),
        ),
        migrations.RunPython(install_job, uninstall_job),
    ]
