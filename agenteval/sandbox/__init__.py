"""Hardened Docker sandboxes: the ``Sandbox`` lifecycle and the container layout every trial
shares (``base``), the Docker implementation (``docker``), the engine connection (``engine``),
images built from ``sandboxes/*/Dockerfile`` (``images``), and leftovers found and removed
(``cleanup``)."""
