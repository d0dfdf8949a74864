"""The Redfish trees the simulated devices serve: one module per device kind, the shared shapes in
``common``."""

from factory.simulator.redfish.bmc import BmcTree
from factory.simulator.redfish.cdu import CduTree
from factory.simulator.redfish.common import ROOT, HttpError, Tree, error_body
from factory.simulator.redfish.pdu import PduTree

__all__ = ["ROOT", "BmcTree", "CduTree", "HttpError", "PduTree", "Tree", "error_body"]
