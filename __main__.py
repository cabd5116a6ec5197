"""``pulumi up`` entry point: the wgmesh program (:func:`wgmesh.components.program.program`) for this stack."""

from wgmesh.components.program import program

program()
