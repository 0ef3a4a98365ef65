"""`adapters demo`: the main job end to end on the embedded local registry, with no server and no
network. A small real adapter ships here (`data/sms-spam/`: LoRA r=4 on the query and value
projections of all-MiniLM-L6-v2, trained by `tools/train_demo_adapter.py` on the UCI SMS spam
collection); the demo publishes, searches, installs, checks and attaches it, and shows how the
predictions on held-out messages change.

The adapter classifies without a head: a message takes the label whose description its sentence
embedding is closest to (:mod:`.classify`), so the base model alone already predicts, and what the
adapter changes is visible as is. Importing this package imports no torch.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
PACKAGE_DIR = DATA / "sms-spam"  # manifest.json + adapter.safetensors, as save_adapter wrote them
EXAMPLES_FILE = DATA / "examples.json"  # held-out messages with labels, and the held-out accuracies
BASE_CONFIG_FILE = DATA / "base-config.json"  # all-MiniLM-L6-v2's config, for the fallback base
ADAPTER = "demo/sms-spam"
VERSION = "1.0.0"
LABELS = ("ham", "spam")
# What each label means, embedded by the model itself; the nearest description is the prediction.
LABEL_TEXTS = (
    "a personal text message from a friend or family member",
    "spam: an advert for a prize, a free offer or a paid text service",
)
