"""adapterhub-client: pip for model adapters.

The public API is imported lazily so that `import adapterhub_client` (and the CLI) never
pays for torch unless a tensor-touching name is used. The TYPE_CHECKING block below names the
same API for type checkers and IDEs; tests/unit/test_public_api.py keeps the two in step.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> module that defines it
_LAZY = {
    # package manager
    "Hub": "adapterhub_client.hub",
    # results of the Hub's workflows
    "AttachCheck": "adapterhub_client.operations.results",
    "AttachReport": "adapterhub_client.operations.results",
    "Attached": "adapterhub_client.operations.results",
    "CacheStats": "adapterhub_client.operations.results",
    "CheckedAdapter": "adapterhub_client.operations.results",
    "Converted": "adapterhub_client.operations.results",
    "Exported": "adapterhub_client.operations.results",
    "Fingerprinted": "adapterhub_client.operations.results",
    "HubSource": "adapterhub_client.operations.results",
    "OciSource": "adapterhub_client.operations.results",
    "BuildReport": "adapterhub_client.registry.build",
    "AdapterHubOptions": "adapterhub_client.operations.results",
    "Info": "adapterhub_client.operations.results",
    "Installed": "adapterhub_client.operations.results",
    "InstalledAdapter": "adapterhub_client.operations.results",
    "Locked": "adapterhub_client.operations.results",
    "Merged": "adapterhub_client.operations.results",
    "ModelInstall": "adapterhub_client.operations.results",
    "Packed": "adapterhub_client.operations.results",
    "Published": "adapterhub_client.operations.results",
    "Removed": "adapterhub_client.operations.results",
    "Resolved": "adapterhub_client.operations.results",
    "SearchHit": "adapterhub_client.operations.results",
    "VerifyReport": "adapterhub_client.operations.results",
    "Yanked": "adapterhub_client.operations.results",
    # errors (every class in errors.__all__)
    "AdapterConfigError": "adapterhub_client.errors",
    "AdapterError": "adapterhub_client.errors",
    "AdapterWarning": "adapterhub_client.errors",
    "AdapterWeightsError": "adapterhub_client.errors",
    "IncompatibleError": "adapterhub_client.errors",
    "IntegrityError": "adapterhub_client.errors",
    "InvalidPackageError": "adapterhub_client.errors",
    "LockMismatchError": "adapterhub_client.errors",
    "NotFoundError": "adapterhub_client.errors",
    "OfflineMissError": "adapterhub_client.errors",
    "RegistryError": "adapterhub_client.errors",
    "ResolutionError": "adapterhub_client.errors",
    "StorageError": "adapterhub_client.errors",
    "UnsupportedAdapterError": "adapterhub_client.errors",
    "UsageError": "adapterhub_client.errors",
    "YankedWarning": "adapterhub_client.errors",
    # adapter files: packages, PEFT, AdapterHub
    "load_adapter": "adapterhub_client.formats",
    "save_adapter": "adapterhub_client.formats",
    "export_peft": "adapterhub_client.formats",
    "convert_package": "adapterhub_client.formats",
    # torch modules (built-in adapter modules)
    "LoRAConfig": "adapterhub_client.nn.lora",
    "BottleneckConfig": "adapterhub_client.nn.bottleneck",
    "add_adapter": "adapterhub_client.nn.model",
    "set_active_adapters": "adapterhub_client.nn.model",
    "disable_adapters": "adapterhub_client.nn.model",
    "merge_adapters": "adapterhub_client.nn.model",
    "unmerge_adapters": "adapterhub_client.nn.model",
    "merge_and_unload": "adapterhub_client.nn.model",
    "mark_only_adapters_trainable": "adapterhub_client.nn.model",
    "adapter_summary": "adapterhub_client.nn.model",
    "delete_adapter": "adapterhub_client.nn.model",
    "list_adapters": "adapterhub_client.nn.model",
    "add_head": "adapterhub_client.nn.model",
    "head_output": "adapterhub_client.nn.model",
    "adapter_heads": "adapterhub_client.nn.model",
    "HeadConfig": "adapterhub_client.nn.heads",
    "ModuleCopy": "adapterhub_client.nn.heads",
}

if TYPE_CHECKING:
    from .errors import (
        AdapterConfigError,
        AdapterError,
        AdapterWarning,
        AdapterWeightsError,
        IncompatibleError,
        IntegrityError,
        InvalidPackageError,
        LockMismatchError,
        NotFoundError,
        OfflineMissError,
        RegistryError,
        ResolutionError,
        StorageError,
        UnsupportedAdapterError,
        UsageError,
        YankedWarning,
    )
    from .formats import convert_package, export_peft, load_adapter, save_adapter
    from .hub import Hub
    from .nn.bottleneck import BottleneckConfig
    from .nn.heads import HeadConfig, ModuleCopy
    from .nn.lora import LoRAConfig
    from .nn.model import (
        adapter_heads,
        adapter_summary,
        add_adapter,
        add_head,
        delete_adapter,
        disable_adapters,
        head_output,
        list_adapters,
        mark_only_adapters_trainable,
        merge_adapters,
        merge_and_unload,
        set_active_adapters,
        unmerge_adapters,
    )
    from .operations.results import (
        AdapterHubOptions,
        AttachCheck,
        Attached,
        AttachReport,
        CacheStats,
        CheckedAdapter,
        Converted,
        Exported,
        Fingerprinted,
        HubSource,
        Info,
        Installed,
        InstalledAdapter,
        Locked,
        Merged,
        ModelInstall,
        OciSource,
        Packed,
        Published,
        Removed,
        Resolved,
        SearchHit,
        VerifyReport,
        Yanked,
    )
    from .registry.build import BuildReport

# Spelled out (not built from _LAZY) so that linters and IDEs read it; tests check they agree.
__all__ = [
    "__version__",
    "AdapterConfigError",
    "AdapterError",
    "AdapterWarning",
    "AdapterWeightsError",
    "AttachCheck",
    "AttachReport",
    "Attached",
    "BottleneckConfig",
    "CacheStats",
    "CheckedAdapter",
    "Converted",
    "Exported",
    "Fingerprinted",
    "HubSource",
    "OciSource",
    "BuildReport",
    "AdapterHubOptions",
    "Hub",
    "IncompatibleError",
    "Info",
    "Installed",
    "InstalledAdapter",
    "IntegrityError",
    "InvalidPackageError",
    "LoRAConfig",
    "LockMismatchError",
    "Locked",
    "Merged",
    "ModelInstall",
    "NotFoundError",
    "OfflineMissError",
    "Packed",
    "Published",
    "RegistryError",
    "Removed",
    "ResolutionError",
    "Resolved",
    "SearchHit",
    "StorageError",
    "UnsupportedAdapterError",
    "UsageError",
    "VerifyReport",
    "Yanked",
    "YankedWarning",
    "adapter_summary",
    "add_adapter",
    "delete_adapter",
    "disable_adapters",
    "export_peft",
    "convert_package",
    "list_adapters",
    "add_head",
    "head_output",
    "adapter_heads",
    "HeadConfig",
    "ModuleCopy",
    "load_adapter",
    "mark_only_adapters_trainable",
    "merge_adapters",
    "merge_and_unload",
    "save_adapter",
    "set_active_adapters",
    "unmerge_adapters",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adapterhub_client' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
