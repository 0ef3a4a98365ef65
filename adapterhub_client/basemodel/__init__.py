"""What we know about a base model without loading it: safetensors headers, fingerprints
(registry_schema/FINGERPRINT.md) and compatibility verdicts. Torch only for in-memory modules."""
