"""``pulumi up`` entry point: the wgmesh program (:func:`components.program.program`) for this stack."""

from components.program import program

program()
