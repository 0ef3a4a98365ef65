"""AdapterHub identifiers resolved through the archived index shipped as package data: the grammar of
the `adapters` library, config hashes that reproduce the index's own, configs compared by meaning
(checked against configs the real `adapters` 1.3.0 wrote, tests/fixtures/adapterhub), and the
selection rules. Torch-free."""

from __future__ import annotations

import copy
import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from adapterhub_client.errors import IncompatibleError, NotFoundError, UsageError
from adapterhub_client.registry import adapterhub as ah
from adapterhub_client.registry.adapterhub import (
    AdapterHubId,
    candidates_for,
    config_hash,
    describe_architecture,
    parse_adapterhub_id,
    resolve_adapterhub,
    resolve_architecture,
    same_architecture,
    search_adapterhub,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "adapterhub"  # written by adapters 1.3.0 (tools/make_adapterhub_fixtures.py)
ARCHIVE = Path("/work/shared/adapterhub-index")  # the archived Hub repository, where this machine has it
BERT = "bert-base-uncased"


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    """The shipped index as plain JSON: the oracle the resolver's answers are checked against."""
    raw = resources.files("adapterhub_client.registry").joinpath("data", ah.DATA_FILE).read_bytes()
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


def fixture_config(case: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((FIXTURES / case / "adapter_config.json").read_text())["config"]
    return config


def entry(data: dict[str, Any], model: str, task: str, subtask: str) -> dict[str, Any]:
    found: dict[str, Any] = data["models"][model][task][subtask]
    return found


# --- the grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ah:sentiment/sst-2", AdapterHubId("sentiment", "sst-2")),
        ("ah:sentiment/sst-2@ukp", AdapterHubId("sentiment", "sst-2", "ukp")),
        ("ah:wikiann/zh_yue@lohfink-rossi", AdapterHubId("wikiann", "zh_yue", "lohfink-rossi")),
        ("ah:sst-2", AdapterHubId("sst-2")),
        ("ah:sst-2@ukp", AdapterHubId("sst-2", None, "ukp")),
        (
            "ah:@ukp/bert-base-uncased_sentiment_sst-2_pfeiffer",
            AdapterHubId(org="ukp", file=f"{BERT}_sentiment_sst-2_pfeiffer"),
        ),
    ],
)
def test_identifiers_parse_and_print_back(text: str, expected: AdapterHubId) -> None:
    parsed = parse_adapterhub_id(text)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("sentiment/sst-2", "not an AdapterHub identifier"),
        (" ah:sentiment/sst-2", "not an AdapterHub identifier"),
        ("ah:", "empty task"),
        ("ah:/sst-2", "empty task"),
        ("ah:sentiment/", "empty subtask"),
        ("ah:sentiment/sst-2@", "empty org"),
        ("ah:sentiment/sst-2\n", "invalid subtask"),
        ("ah:senti ment/sst-2", "invalid task"),
        ("ah:sentiment/-sst", "invalid subtask"),
        ("ah:sentiment/sst-2@u/kp", "invalid org"),
        ("ah:a/b/c", "expected ah:<task>/<subtask>"),
        ("ah:sentiment/sst-2@ukp@1", "a version is not part of the identifier"),
        ("ah:@ukp", "expected ah:@<org>/<file>"),
        ("ah:@ukp/a/b", "expected ah:@<org>/<file>"),
    ],
)
def test_malformed_identifiers_are_usage_errors_naming_the_part(text: str, named: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_adapterhub_id(text)
    assert err.value.exit_code == 2
    assert named in str(err.value)
    assert "\n" not in str(err.value)


# --- config identity ---------------------------------------------------------------------------


def test_config_hash_reproduces_every_hash_the_index_lists(data: dict[str, Any]) -> None:
    for chash, config in data["configs"].items():
        assert config_hash(config) == chash
    listed = [
        (a["config"], name)
        for tasks in data["models"].values()
        for subtasks in tasks.values()
        for e in subtasks.values()
        for name, a in e["adapters"].items()
    ]
    assert len(listed) == data["source"]["adapters"]
    for chash, name in listed:
        assert config_hash(data["configs"][chash]) == chash, name


def test_config_hash_follows_adapters_rules(data: dict[str, Any]) -> None:
    pfeiffer = data["configs"][data["architectures"]["pfeiffer"]]
    base = config_hash(pfeiffer)
    # falsy values never count, at any depth; v3 keys at their defaults are left out
    assert config_hash({**pfeiffer, "leave_out": [], "dropout": 0.0, "inv_adapter": None}) == base
    assert config_hash({**pfeiffer, "scaling": 1.0, "phm_dim": 4, "init_weights": "bert"}) == base
    assert config_hash({**pfeiffer, "scaling": 4.0}) != base
    assert config_hash({**pfeiffer, "reduction_factor": 16.0}) != base  # the JSON text differs: by hash, not meaning
    # the full adapters-1.x dicts the real library saved hash like the archived configs
    assert config_hash(fixture_config("seq_bn")) == data["architectures"]["pfeiffer"]
    assert config_hash(fixture_config("double_seq_bn")) == data["architectures"]["houlsby"]
    with pytest.raises(UsageError):
        config_hash(["not", "a", "dict"])  # type: ignore[arg-type]


def test_the_data_records_its_source_and_license() -> None:
    source = ah.adapterhub_index_source()
    assert source["commit"] == "a53c6b7"
    assert source["license"] == "Apache-2.0"
    assert source["repository"] == "https://github.com/adapter-hub/Hub"


@pytest.mark.skipif(not (ARCHIVE / "dist" / "v2").is_dir(), reason="the archived Hub repository is not on this machine")
def test_the_derive_script_reproduces_the_shipped_bytes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("derive", REPO / "tools" / "derive_adapterhub_index.py")
    assert spec is not None and spec.loader is not None
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    assert derive.main([str(ARCHIVE), str(tmp_path)]) == 0
    shipped = resources.files("adapterhub_client.registry").joinpath("data", ah.DATA_FILE).read_bytes()
    assert (tmp_path / ah.DATA_FILE).read_bytes() == shipped
    assert len(shipped) < 300_000


# --- architectures by meaning ------------------------------------------------------------------


@pytest.mark.parametrize("case", ["seq_bn", "double_seq_bn", "par_bn"])
def test_v1_preset_names_give_the_dicts_adapters_writes(case: str) -> None:
    assert resolve_architecture(case) == fixture_config(case)


def test_archived_names_give_the_index_configs(data: dict[str, Any]) -> None:
    for name, chash in data["architectures"].items():
        assert resolve_architecture(name) == data["configs"][chash]
        assert resolve_architecture(name.upper()) == data["configs"][chash]
    config = resolve_architecture("pfeiffer[reduction_factor=2, leave_out=[0, 1]]")
    assert config["reduction_factor"] == 2 and config["leave_out"] == [0, 1]
    given = {"mh_adapter": True}
    copied = resolve_architecture(given)
    copied["mh_adapter"] = False
    assert given == {"mh_adapter": True}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("nonsense", "unknown architecture"),
        ("lora", "not a bottleneck architecture"),
        ("pfeiffer[reduction=2]", "unknown bottleneck config key"),
        ("pfeiffer[reduction_factor=]", "invalid architecture overrides"),
        ("pfeiffer[__import__('os')]", "invalid architecture overrides"),
        ("x" * 2000, "longer than"),
    ],
)
def test_bad_architectures_are_usage_errors(text: str, named: str) -> None:
    with pytest.raises(UsageError) as err:
        resolve_architecture(text)
    assert named in str(err.value)


def test_archived_and_v1_configs_compare_by_meaning(data: dict[str, Any]) -> None:
    pfeiffer, houlsby = resolve_architecture("pfeiffer"), resolve_architecture("houlsby")
    seq_bn, double_seq_bn, par_bn = (fixture_config(c) for c in ("seq_bn", "double_seq_bn", "par_bn"))
    assert same_architecture(pfeiffer, seq_bn) and same_architecture(seq_bn, pfeiffer)
    assert same_architecture(houlsby, double_seq_bn)
    assert not same_architecture(pfeiffer, double_seq_bn)
    assert not same_architecture(pfeiffer, par_bn)
    assert not same_architecture(seq_bn, fixture_config("seq_bn_custom"))
    assert same_architecture(houlsby, {**double_seq_bn, "non_linearity": "silu", "architecture": "bottleneck"})
    # spelling: 2 and 2.0 (two index configs with different hashes), {"default": 16} and 16
    two = [c for c in data["configs"].values() if c["reduction_factor"] == 2 and c["non_linearity"] == "relu"]
    two = [c for c in two if not c["mh_adapter"]]
    assert len({config_hash(c) for c in two}) == 2 and same_architecture(two[0], two[1])
    assert same_architecture(pfeiffer, {**seq_bn, "reduction_factor": {"default": 16}})
    assert not same_architecture(pfeiffer, {**seq_bn, "reduction_factor": {"default": 16, "3": 8}})
    assert same_architecture({**pfeiffer, "leave_out": [3, 1]}, {**seq_bn, "leave_out": [1, 3, 3]})
    # what cannot change the math: the adapter's residual point without a new LayerNorm, init, dropout
    assert same_architecture({**pfeiffer, "adapter_residual_before_ln": True}, seq_bn)
    assert not same_architecture({**pfeiffer, "adapter_residual_before_ln": True, "ln_after": True}, seq_bn)
    assert same_architecture(pfeiffer, {**seq_bn, "init_weights": "mam_adapter", "dropout": 0.1})
    assert not same_architecture(pfeiffer, {**seq_bn, "scaling": "learned"})
    assert not same_architecture(pfeiffer, {**seq_bn, "use_gating": True})
    assert not same_architecture(pfeiffer, {**seq_bn, "phm_layer": True})
    # a 0.x "gelu" is the tanh approximation (adapters renames it to gelu_new when loading 0.x files)
    assert same_architecture({**pfeiffer, "non_linearity": "gelu"}, {**seq_bn, "non_linearity": "gelu_new"})
    assert not same_architecture({**pfeiffer, "non_linearity": "gelu"}, {**seq_bn, "non_linearity": "gelu"})
    # the v1 nested invertible adapter is the v2 pair of keys
    nested = {**pfeiffer, "invertible_adapter": {"block_type": "nice", "non_linearity": "relu", "reduction_factor": 2}}
    assert same_architecture(nested, resolve_architecture("pfeiffer+inv"))
    assert same_architecture(resolve_architecture("seq_bn_inv"), resolve_architecture("pfeiffer+inv"))
    assert not same_architecture(nested, pfeiffer)
    inv = resolve_architecture("pfeiffer+inv")
    assert not same_architecture(inv, {**inv, "inv_adapter_reduction_factor": 4})
    assert same_architecture({**pfeiffer, "inv_adapter_reduction_factor": 4}, pfeiffer)  # no invertible adapter
    lora = fixture_config("lora")
    assert same_architecture(lora, copy.deepcopy(lora)) and not same_architecture(lora, seq_bn)


def test_every_index_config_has_a_name_that_reads_back_to_it(data: dict[str, Any]) -> None:
    configs = list(data["configs"].values())
    for config in [*configs, *(fixture_config(c) for c in ("seq_bn", "par_bn", "seq_bn_custom"))]:
        name = describe_architecture(config)
        assert same_architecture(resolve_architecture(name), config), name
    names = {describe_architecture(c) for c in configs}
    assert len(names) == len({json.dumps(ah._meaning(c), sort_keys=True, default=str) for c in configs})


# --- resolution --------------------------------------------------------------------------------


def test_resolution_without_an_architecture_takes_the_subtasks_default(data: dict[str, Any]) -> None:
    e = entry(data, BERT, "sentiment", "sst-2")
    default = e["adapters"][e["default"]]
    match = resolve_adapterhub("ah:sentiment/sst-2@ukp", BERT)
    assert (match.org, match.name) == (default["org"], e["default"])
    assert match.hf_repo == f"AdapterHub/{e['default']}"
    assert match.version == default["default_version"] and match.hf_revision == "main"
    assert [match.archive_url, match.archive_sha256] == default["versions"][match.version]
    assert match.config == data["configs"][default["config"]] and match.config_hash == default["config"]
    assert (match.model_name, match.task, match.subtask) == (BERT, "sentiment", "sst-2")
    # the same adapter by every other spelling the library accepts
    assert resolve_adapterhub("ah:sentiment/sst-2", BERT) == match
    assert resolve_adapterhub(AdapterHubId("sst-2"), BERT) == match
    assert resolve_adapterhub(f"ah:@ukp/{e['default']}", None) == match
    assert resolve_adapterhub("ah:sentiment/sst-2", f"google-bert/{BERT}") == match  # the Hub's new name
    match.config["reduction_factor"] = 1  # a copy
    assert resolve_adapterhub("ah:sentiment/sst-2", BERT).config == data["configs"][default["config"]]


@pytest.mark.parametrize("architecture", ["houlsby", "double_seq_bn", "HOULSBY", "fixture"])
def test_an_architecture_picks_the_candidate_of_the_same_meaning(data: dict[str, Any], architecture: str) -> None:
    wanted: Any = fixture_config("double_seq_bn") if architecture == "fixture" else architecture
    match = resolve_adapterhub("ah:sentiment/sst-2", BERT, architecture=wanted)
    e = entry(data, BERT, "sentiment", "sst-2")
    assert match.name != e["default"]
    assert e["adapters"][match.name]["config"] == data["architectures"]["houlsby"]


def test_index_configs_written_differently_still_match() -> None:
    # nli/multinli by kabirahuja2431: reduction_factor 2.0 in the index, asked for as 2
    found = search_adapterhub("multinli")
    assert any(c.config["reduction_factor"] == 2.0 and isinstance(c.config["reduction_factor"], float) for c in found)
    for c in found:
        wanted = {**c.config, "reduction_factor": int(c.config["reduction_factor"])}
        assert resolve_adapterhub(c.identifier, c.model_name, architecture=wanted).name == c.name


def test_versions_are_branches_and_the_default_is_main(data: dict[str, Any]) -> None:
    multi = next(c for c in search_adapterhub("", BERT) if len(c.versions) > 2)
    other = next(v for v in multi.versions if v != multi.default_version)
    match = resolve_adapterhub(multi.identifier, BERT, version=other)
    assert (match.version, match.hf_revision) == (other, other)
    assert [match.archive_url, match.archive_sha256] == entry(data, BERT, multi.task, multi.subtask)["adapters"][
        multi.name
    ]["versions"][other]
    assert resolve_adapterhub(multi.identifier, BERT, version=multi.default_version).hf_revision == "main"
    with pytest.raises(NotFoundError) as err:
        resolve_adapterhub(multi.identifier, BERT, version="no-such-version")
    assert err.value.exit_code == 3 and "no version 'no-such-version'" in str(err.value)
    assert "more" in str(err.value)  # a long list is cut short


def test_unknown_models_name_the_models_that_have_the_subtask(data: dict[str, Any]) -> None:
    having = sorted(m for m, tasks in data["models"].items() if "sst-2" in tasks.get("sentiment", {}))
    assert BERT in having and "xlm-roberta-large" not in having
    for model in ("no-such-model", "xlm-roberta-large"):
        with pytest.raises(NotFoundError) as err:
            resolve_adapterhub("ah:sentiment/sst-2", model)
        assert err.value.exit_code == 3
        assert ", ".join(having) in str(err.value)
    with pytest.raises(NotFoundError) as err:
        resolve_adapterhub("ah:sentiment/no-such-subtask", BERT)
    assert "for any model" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"ahid": "ah:sentiment/sst-2@nobody"}, NotFoundError, "no adapter by 'nobody'; by: ukp"),
        ({"ahid": "ah:sentiment/sst-2", "architecture": "par_bn"}, NotFoundError, "architectures: houlsby, pfeiffer"),
        ({"ahid": "ah:sentiment/sst-2", "model_name": None}, UsageError, "give its name"),
        ({"ahid": "ah:sentiment/sst-2", "architecture": "lora"}, UsageError, "not a bottleneck"),
        ({"ahid": "ah:@ukp/no-such-file"}, NotFoundError, "no adapter file ukp/no-such-file"),
        ({"ahid": f"ah:@nobody/{BERT}_sentiment_sst-2_pfeiffer"}, NotFoundError, "no adapter file"),
        ({"ahid": f"ah:@ukp/{BERT}_sentiment_sst-2_pfeiffer", "model_name": "gpt2"}, IncompatibleError, "not 'gpt2'"),
        ({"ahid": f"ah:@ukp/{BERT}_sentiment_sst-2_pfeiffer", "architecture": "houlsby"}, NotFoundError, "not houlsby"),
    ],
)
def test_refusals_are_one_line_and_name_what_is_wrong(kwargs: dict[str, Any], error: type, named: str) -> None:
    with pytest.raises(error) as err:
        resolve_adapterhub(**{"model_name": BERT, **kwargs})
    assert named in str(err.value) and "\n" not in str(err.value)


def test_a_one_word_identifier_is_read_as_adapters_reads_it(data: dict[str, Any]) -> None:
    multilingual = data["models"]["bert-base-multilingual-cased"]
    both = [t for t, subs in multilingual.items() if "wiki" in subs]
    assert len(both) > 1
    with pytest.raises(UsageError) as err:
        resolve_adapterhub("ah:wiki", "bert-base-multilingual-cased")
    assert f"ah:{both[0]}/wiki" in str(err.value)
    # a task with one subtask
    task, subs = next((t, s) for t, s in data["models"][BERT].items() if len(s) == 1)
    (subtask,) = subs
    assert resolve_adapterhub(f"ah:{task}", BERT) == resolve_adapterhub(f"ah:{task}/{subtask}", BERT)


def test_without_a_default_the_choices_are_listed(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]) -> None:
    """The archived index gives every subtask a default; an index without one lists the choices."""
    changed = copy.deepcopy(data)
    e = changed["models"][BERT]["sentiment"]["sst-2"]
    e["default"] = None
    clone = {**e["adapters"][next(iter(e["adapters"]))], "org": "acme"}
    e["adapters"]["acme-sst-2"] = clone
    monkeypatch.setattr(ah, "_index", lambda: ah._build(changed))
    with pytest.raises(UsageError) as err:
        resolve_adapterhub("ah:sentiment/sst-2", BERT)
    assert "has 3 adapters: @acme" in str(err.value) and "@ukp houlsby" in str(err.value)
    assert resolve_adapterhub("ah:sentiment/sst-2@acme", BERT).name == "acme-sst-2"
    with pytest.raises(UsageError):
        resolve_adapterhub("ah:sentiment/sst-2@ukp", BERT)
    assert resolve_adapterhub("ah:sentiment/sst-2@ukp", BERT, architecture="houlsby").org == "ukp"


def test_candidates_and_search(data: dict[str, Any]) -> None:
    e = entry(data, BERT, "sentiment", "sst-2")
    found = candidates_for(BERT, "sentiment", "sst-2")
    assert [c.name for c in found][0] == e["default"] and {c.name for c in found} == set(e["adapters"])
    assert all(c.hf_repo == f"AdapterHub/{c.name}" and c.model_name == BERT for c in found)
    assert candidates_for(BERT, "sentiment", "nope") == [] and candidates_for("nope", "sentiment", "sst-2") == []
    hits = search_adapterhub("SST")
    assert hits and all("sst" in f"{c.task}/{c.subtask}@{c.org}".lower() for c in hits)
    assert {c.model_name for c in hits} >= {BERT, "roberta-base"}
    assert all(c.model_name == BERT for c in search_adapterhub("sst", BERT))
    assert search_adapterhub("sst", "no-such-model") == []
    everything = search_adapterhub("")
    assert len(everything) == data["source"]["adapters"]
    by_model = search_adapterhub("roberta-large")
    assert by_model and all(c.model_name in ("roberta-large", "xlm-roberta-large") for c in by_model)
