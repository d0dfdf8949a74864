# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sovereignty", "0012_decision_repeats")]

    operations: list = []
