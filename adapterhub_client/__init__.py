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
    "SiteReport": "adapterhub_client.site",
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
    "SignatureReport": "adapterhub_client.operations.results",
    "Signed": "adapterhub_client.operations.results",
    "VerifyReport": "adapterhub_client.operations.results",
    # signatures (docs/SIGNING.md)
    "SignatureInfo": "adapterhub_client.signing",
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
    # torch modules (built-in adapter modules; AdapterConfig / AdapterLayer for kinds of your own)
    "AdapterConfig": "adapterhub_client.nn.base",
    "AdapterLayer": "adapterhub_client.nn.base",
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
    # 4-bit bases for QLoRA (NF4 / FP4, bitsandbytes' format)
    "Linear4bit": "adapterhub_client.nn.quant",
    "quantize": "adapterhub_client.formats.quantized",
    "prepare_for_kbit_training": "adapterhub_client.nn.quant",
    "load_quantized": "adapterhub_client.formats.quantized",
    "save_quantized": "adapterhub_client.formats.quantized",
    # composition blocks and AdapterFusion
    "Stack": "adapterhub_client.nn.compose",
    "Parallel": "adapterhub_client.nn.compose",
    "Average": "adapterhub_client.nn.compose",
    "BatchSplit": "adapterhub_client.nn.compose",
    "Fuse": "adapterhub_client.nn.compose",
    "active_composition": "adapterhub_client.nn.model",
    "FusionConfig": "adapterhub_client.nn.fusion",
    "add_fusion": "adapterhub_client.nn.fusion",
    "train_fusion": "adapterhub_client.nn.fusion",
    "fusion_regularization_loss": "adapterhub_client.nn.fusion",
    "save_fusion": "adapterhub_client.formats.fusion",
    "load_fusion": "adapterhub_client.formats.fusion",
    "save_composition": "adapterhub_client.formats.composition",
    "load_composition": "adapterhub_client.formats.composition",
    "merge_weighted": "adapterhub_client.nn.merge",
    "MergeReport": "adapterhub_client.nn.merge",
    "ModuleMerge": "adapterhub_client.nn.merge",
    "hotswap": "adapterhub_client.nn.hotswap",
    "hotswap_metadata": "adapterhub_client.nn.hotswap",
    "route": "adapterhub_client.nn.routing",
    "enable_adapter_names": "adapterhub_client.nn.routing",
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
    from .formats.composition import load_composition, save_composition
    from .formats.fusion import load_fusion, save_fusion
    from .formats.quantized import load_quantized, quantize, save_quantized
    from .hub import Hub
    from .nn.base import AdapterConfig, AdapterLayer
    from .nn.bottleneck import BottleneckConfig
    from .nn.compose import Average, BatchSplit, Fuse, Parallel, Stack
    from .nn.fusion import FusionConfig, add_fusion, fusion_regularization_loss, train_fusion
    from .nn.heads import HeadConfig, ModuleCopy
    from .nn.hotswap import hotswap, hotswap_metadata
    from .nn.lora import LoRAConfig
    from .nn.merge import MergeReport, ModuleMerge, merge_weighted
    from .nn.model import (
        active_composition,
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
    from .nn.quant import Linear4bit, prepare_for_kbit_training
    from .nn.routing import enable_adapter_names, route
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
        SignatureReport,
        Signed,
        VerifyReport,
        Yanked,
    )
    from .registry.build import BuildReport
    from .signing import SignatureInfo
    from .site import SiteReport

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
    "SiteReport",
    "AdapterHubOptions",
    "Hub",
    "IncompatibleError",
    "Info",
    "Installed",
    "InstalledAdapter",
    "IntegrityError",
    "InvalidPackageError",
    "AdapterConfig",
    "AdapterLayer",
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
    "SignatureInfo",
    "SignatureReport",
    "Signed",
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
    "Linear4bit",
    "quantize",
    "prepare_for_kbit_training",
    "load_quantized",
    "save_quantized",
    "Stack",
    "Parallel",
    "Average",
    "BatchSplit",
    "Fuse",
    "active_composition",
    "FusionConfig",
    "add_fusion",
    "train_fusion",
    "fusion_regularization_loss",
    "save_fusion",
    "load_fusion",
    "save_composition",
    "load_composition",
    "merge_weighted",
    "MergeReport",
    "ModuleMerge",
    "hotswap",
    "hotswap_metadata",
    "route",
    "enable_adapter_names",
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
