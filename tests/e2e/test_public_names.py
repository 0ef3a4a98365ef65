"""Every name the package exports resolves to an object (this imports torch, hence e2e)."""

from __future__ import annotations

import adapterhub_client


def test_every_lazy_name_resolves():
    for name, module in adapterhub_client._LAZY.items():
        value = getattr(adapterhub_client, name)
        assert value is not None, name
        assert getattr(value, "__module__", module).startswith("adapterhub_client"), name
