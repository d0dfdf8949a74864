"""Simulated site hardware: UltraServer BMCs, rack PDUs and CDUs speaking a DMTF Redfish subset.

Pure Python with no Django (a test enforces it): the simulator stands where real devices stand,
on the far side of the site agent, and must never reach into the control plane.
"""
