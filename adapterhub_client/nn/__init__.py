"""The built-in adapter modules, in memory only: LoRA/DoRA (:mod:`.lora`, :mod:`.dora`), bottleneck
adapters (:mod:`.bottleneck`), targeting (:mod:`.targets`), the kind contract (:mod:`.base`) and the
model-level API (:mod:`.model`). Files are the business of the formats package, which builds on
this one; nothing here depends on files, registries or settings.

Keep this file free of imports: :mod:`.layout` is torch-free and is imported by torch-free code.
"""
