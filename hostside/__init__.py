"""What runs on the peer hosts, not in the Pulumi process: the bash scripts that install, apply, remove and verify a
peer's wg-quick config (:mod:`wgmesh.hostside.install`), and the EC2 user data.

Kept apart from :mod:`mesh` (the pure core: model, validation, rendering) because these texts execute as root on
remote machines over SSH, and apart from :mod:`components` because they are plain strings any deploy path can send.
"""
