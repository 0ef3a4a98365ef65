"""The workflows behind `Hub` and the CLI, one module each (as pip's `_internal/operations`):

* `session`     what every workflow shares: settings, cache, registry and HTTP clients, downloader
* `resolution`  references -> pinned versions with verified manifests
* `install`     parallel verified downloads, installed views, uninstall
* `lock`        adapters.lock: lock, `--locked`, `--frozen`
* `for_model`   compatibility checks and version choice against a local base model
* `query`       info, search, installed
* `publish`     publish and yank in directory registries
* `verify`      re-hash installed files
* `attach`      resolve + check, then attach onto a base model or merge into its checkpoint
* `fingerprint` base-model fingerprints with the shared cache folder
* `results`     the typed results every workflow returns (`to_json()` for `--json`)

Nothing here imports torch at import time; `attach` does when it loads a model.
"""
