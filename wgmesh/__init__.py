"""wgmesh: a WireGuard full mesh between cloud servers in several clouds and regions, as Pulumi components.

Installed, the project adds this one import name and nothing else. The repository keeps its layout: pyproject.toml's
``package-dir`` maps each top-level folder to its place under ``wgmesh``:

    wgmesh.mesh        mesh/        the pure core, no Pulumi (``python -m wgmesh.mesh``: the offline commands)
    wgmesh.hostside    hostside/    the scripts that run on the hosts
    wgmesh.components  components/  the Pulumi components: ``from wgmesh.components import Mesh``
    wgmesh.lab         lab/         the local network-namespace lab (``pip install 'wgmesh[lab]'``)
    wgmesh.cli         cli/         the ``wgmesh`` command (``python -m wgmesh``)

``testproviders/`` is test equipment and is not installed: the lab finds it in a checkout.
"""

from pathlib import Path as _Path

# In a checkout (this folder beside Pulumi.yaml and mesh/), the folders are found from here as well: the repository
# then works from sys.path alone (``PYTHONPATH=<checkout>``, as provider/pulumi-resource-wgmesh and the test
# providers' shims run it, or pytest at the root) without an install, or with an editable install older than a
# folder. Installed from a wheel, this folder's parent is site-packages and nothing is added.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "Pulumi.yaml").is_file() and (_checkout / "mesh" / "__init__.py").is_file():
    __path__.append(str(_checkout))
del _Path, _checkout
