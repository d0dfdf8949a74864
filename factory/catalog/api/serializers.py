from rest_framework import serializers

from factory.catalog.models import ChipModel, UltraServerModel


class ChipModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChipModel
        brief_fields = ["name", "slug"]
        fields = [
            "id",
            "name",
            "slug",
            "vendor",
            "process",
            "fp8_dense_pflops",
            "fp8_sparse_pflops",
            "hbm_gb",
            "hbm_type",
            "hbm_tbps",
            "nominal_power_w",
            "max_power_w",
            "cooling",
            "power_is_estimate",
            "source_note",
        ]
        read_only_fields = fields


class UltraServerModelSerializer(serializers.ModelSerializer):
    chip_model_name = serializers.CharField(source="chip_model.name", read_only=True)
    # Derived from the chip model and count; never stored.
    fp8_dense_pflops = serializers.DecimalField(
        max_digits=14, decimal_places=3, read_only=True, allow_null=True
    )
    fp8_sparse_pflops = serializers.DecimalField(
        max_digits=14, decimal_places=3, read_only=True, allow_null=True
    )
    hbm_tb = serializers.DecimalField(max_digits=14, decimal_places=3, read_only=True)
    hbm_tbps = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    nominal_power_w = serializers.IntegerField(read_only=True)
    max_power_w = serializers.IntegerField(read_only=True)

    class Meta:
        model = UltraServerModel
        brief_fields = ["name", "slug"]
        fields = [
            "id",
            "name",
            "slug",
            "chip_model",
            "chip_model_name",
            "chip_count",
            "interconnect",
            "interconnect_note",
            "rack_units",
            "cooling",
            "overhead_power_w",
            "nominal_power_w",
            "max_power_w",
            "fp8_dense_pflops",
            "fp8_sparse_pflops",
            "hbm_tb",
            "hbm_tbps",
            "source_note",
        ]
        read_only_fields = fields
