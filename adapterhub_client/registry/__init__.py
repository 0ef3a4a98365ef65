"""Registry sources: a directory (`file://`) or a static HTTP host, per REGISTRY.md. No torch."""
