"""What we know about a base model without loading it: safetensors headers, fingerprints
(registry_schema/FINGERPRINT.md) and compatibility verdicts.

- `safetensors_header`: parsing and validating headers, canonical dtype names.
- `fingerprint`: the fingerprint format and its computation (see that package's docstring).
- `compat`: verdicts of a manifest's `base_model` against a local model.

Torch only for in-memory modules (`fingerprint.module`, imported when called); no settings: the
fingerprint cache directory is always the caller's.
"""
