"""A local "multi-cloud" on network namespaces, for running wgmesh end to end on one Linux machine (as root).

Not part of the pure core: it runs ``ip``, ``nsenter``, ``mount`` and ``sshd``. ``wgmesh lab ...`` is its
command line (:mod:`wgmesh.cli.lab`); :mod:`wgmesh.lab.topology` has the layout, :mod:`wgmesh.lab.core` builds it.
"""

from wgmesh.lab.core import Lab, LabBusy, LabError, check_prerequisites
from wgmesh.lab.topology import Host, plan

__all__ = ["Host", "Lab", "LabBusy", "LabError", "check_prerequisites", "plan"]
