# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sovereignty", "0011_basis_pins")]

    operations: list = []
