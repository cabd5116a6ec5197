"""The ``wgmesh`` command line: the core's offline commands (:mod:`wgmesh.mesh.commands`) plus the ones that need the
local lab (:mod:`wgmesh.cli.lab`, :mod:`wgmesh.cli.demo`).

It sits above both :mod:`mesh` and :mod:`lab` so that the pure core never imports the lab (nor Pulumi, which the
lab's deploy loads); ``python -m wgmesh.mesh`` keeps the offline commands only.
"""
