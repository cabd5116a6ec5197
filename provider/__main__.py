"""Entry point of the component package when Pulumi's Python language host runs it (``pulumi package add``)."""

from wgmesh.components.provider import main

main()
