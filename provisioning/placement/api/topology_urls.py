from django.urls import path

from provisioning.placement.api import topology

urlpatterns = [
    path("instance-topology/", topology.InstanceTopologyView.as_view(), name="instance-topology"),
    path(
        "instance-topology/export/slurm-tree/",
        topology.SlurmTreeExportView.as_view(),
        name="instance-topology-export-slurm-tree",
    ),
    path(
        "instance-topology/export/slurm-block/",
        topology.SlurmBlockExportView.as_view(),
        name="instance-topology-export-slurm-block",
    ),
    path(
        "instance-topology/export/k8s/",
        topology.K8sLabelsExportView.as_view(),
        name="instance-topology-export-k8s",
    ),
    path(
        "instance-topology/export/json/",
        topology.JsonExportView.as_view(),
        name="instance-topology-export-json",
    ),
]
