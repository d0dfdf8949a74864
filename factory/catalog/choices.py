from django.db import models


class Cooling(models.TextChoices):
    LIQUID = "liquid", "Liquid"
    AIR = "air", "Air"


class Interconnect(models.TextChoices):
    ALL_TO_ALL_SWITCH = "all-to-all-switch", "All-to-all switch"
    TORUS_3D = "3d-torus", "3D torus"
    NVLINK = "nvlink", "NVLink switch"
