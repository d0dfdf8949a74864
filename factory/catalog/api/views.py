from rest_framework import viewsets

from factory.catalog.api.serializers import ChipModelSerializer, UltraServerModelSerializer
from factory.catalog.models import ChipModel, UltraServerModel
from tenants.api.base import ObjectResponseMixin


class ChipModelViewSet(ObjectResponseMixin, viewsets.ReadOnlyModelViewSet):
    """Accelerator chip models (read-only; seeded from HARDWARE.md)."""

    queryset = ChipModel.objects.all()
    serializer_class = ChipModelSerializer
    filterset_fields = ["vendor", "cooling", "slug", "name"]
    ordering_fields = ["name", "fp8_dense_pflops", "hbm_gb"]


class UltraServerModelViewSet(ObjectResponseMixin, viewsets.ReadOnlyModelViewSet):
    """UltraServer models with derived aggregates (read-only)."""

    queryset = UltraServerModel.objects.select_related("chip_model")
    serializer_class = UltraServerModelSerializer
    filterset_fields = ["chip_model", "interconnect", "cooling", "slug", "name", "chip_count"]
    ordering_fields = ["name", "chip_count"]
