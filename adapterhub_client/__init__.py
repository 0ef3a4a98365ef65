"""adapterhub-client: pip for model adapters.

The public API is imported lazily so that `import adapterhub_client` (and the CLI) never
pays for torch unless a tensor-touching name is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__

# public name -> module that defines it
_LAZY = {
    # package manager
    "Hub": "adapterhub_client.hub",
    "AdapterError": "adapterhub_client.errors",
    # torch modules (issue: built-in adapter modules)
    "LoRAConfig": "adapterhub_client.nn.lora",
    "BottleneckConfig": "adapterhub_client.nn.bottleneck",
    "add_adapter": "adapterhub_client.nn.model",
    "load_adapter": "adapterhub_client.nn.model",
    "set_active_adapters": "adapterhub_client.nn.model",
    "disable_adapters": "adapterhub_client.nn.model",
    "merge_adapters": "adapterhub_client.nn.model",
    "unmerge_adapters": "adapterhub_client.nn.model",
    "merge_and_unload": "adapterhub_client.nn.model",
    "mark_only_adapters_trainable": "adapterhub_client.nn.model",
    "adapter_summary": "adapterhub_client.nn.model",
    "save_adapter": "adapterhub_client.nn.model",
    "export_peft": "adapterhub_client.nn.model",
    "delete_adapter": "adapterhub_client.nn.model",
    "list_adapters": "adapterhub_client.nn.model",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adapterhub_client' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
