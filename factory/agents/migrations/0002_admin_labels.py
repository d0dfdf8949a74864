# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations: list = []
