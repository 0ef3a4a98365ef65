"""Model cards for Hub repositories: front matter read back by huggingface_hub's ModelCard as the Hub
reads it, hostile manifest values that cannot leave their field, the publisher's own card completed
without touching its body, and the trainable parameter count. Torch-free."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from adapterhub_client.errors import InvalidPackageError, UsageError
from adapterhub_client.manifest import complete_package
from adapterhub_client.registry.card import (
    MAX_CARD_BYTES,
    card_metadata,
    complete_card,
    markdown_text,
    render_card,
    trainable_parameters,
)
from tests.pkgs import make_package

# Shapes as the manifest records the base weights: linear [out, in], conv1d [in, out].
MODULES = {
    "encoder.0.query": {"shape": [24, 16], "dtype": "float32", "layer": "linear"},
    "encoder.0.value": {"shape": [24, 16], "dtype": "float32", "layer": "linear"},
    "h.0.attn.c_attn": {"shape": [16, 48], "dtype": "float32", "layer": "conv1d"},
}


def package_manifest(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A real package's completed manifest (files hashed from disk)."""
    pkg = make_package(tmp_path / "pkg", "acme/sentiment", "1.0.0", files=2, extra=extra)
    return complete_package(pkg, json.loads((pkg / "manifest.json").read_text()))


def metadata_of(card: str) -> dict[str, Any]:
    """What the Hub reads from a card's front matter."""
    return ModelCard(card).data.to_dict()


def body_of(card: str) -> str:
    return ModelCard(card).text


def with_base(manifest: dict[str, Any], name: str | None = "org/base-model", **base: Any) -> dict[str, Any]:
    manifest["base_model"] = {"name": name, **base}
    return manifest


def test_render_card_front_matter_reads_back_as_the_hub_reads_it(tmp_path: Path) -> None:
    manifest = with_base(package_manifest(tmp_path, license="Apache-2.0", tags=["sentiment", "lora"]))
    card = render_card(manifest)
    assert metadata_of(card) == {
        "base_model": "org/base-model",
        "base_model_relation": "adapter",
        "library_name": "peft",
        "license": "apache-2.0",
        "tags": ["base_model:adapter:org/base-model", "lora", "adapterhub-client", "sentiment"],
    }
    assert metadata_of(card) == card_metadata(manifest)


def test_render_card_body_installs_the_tag_and_lists_every_file(tmp_path: Path) -> None:
    manifest = with_base(package_manifest(tmp_path))
    body = body_of(render_card(manifest, repo_id="team/sentiment-hub"))
    assert "adapters install hf://team/sentiment-hub@1.0.0" in body
    assert "adapters attach hf://team/sentiment-hub@1.0.0 --model ./base-model" in body
    assert "hub.install(['hf://team/sentiment-hub@1.0.0'])" in body
    assert "AutoModel.from_pretrained('org/base-model')" in body
    for entry in manifest["files"]:
        row = next(line for line in body.splitlines() if entry["sha256"] in line)
        assert entry["path"] in row and f"{entry['size']:,} bytes" in row
    python = [t.content for t in MarkdownIt().parse(body) if t.type == "fence" and t.info == "python"]
    compile(python[0], "card-snippet", "exec")  # the Python snippet is valid Python


def test_the_card_does_not_list_itself_so_a_package_can_list_its_card(tmp_path: Path) -> None:
    manifest = package_manifest(tmp_path)
    manifest["files"].append({"path": "README.md", "sha256": "1" * 64, "size": 10})
    card = render_card(manifest)
    manifest["files"][-1] = {"path": "README.md", "sha256": "2" * 64, "size": len(card)}
    assert render_card(manifest) == card and "1" * 64 not in card


def test_a_manifest_without_a_hub_base_gets_no_base_model_key(tmp_path: Path) -> None:
    manifest = with_base(package_manifest(tmp_path), name="/home/me/models/base")
    meta = metadata_of(render_card(manifest))
    assert "base_model" not in meta and meta["base_model_relation"] == "adapter"
    assert not any(t.startswith("base_model:") for t in meta["tags"])


def test_license_the_hub_does_not_know_becomes_other_with_its_name(tmp_path: Path) -> None:
    meta = metadata_of(render_card(package_manifest(tmp_path, license="Acme Proprietary v2")))
    assert (meta["license"], meta["license_name"]) == ("other", "acme-proprietary-v2")
    assert "license" not in metadata_of(render_card(package_manifest(tmp_path / "b", license=None)))


def test_bottleneck_and_adapterhub_format_are_adapter_transformers(tmp_path: Path) -> None:
    bottleneck = package_manifest(tmp_path, adapter={"type": "bottleneck", "config": {"reduction_factor": 16}})
    meta = metadata_of(render_card(bottleneck))
    assert meta["library_name"] == "adapter-transformers"
    assert meta["tags"][:3] == ["base_model:adapter:test/base", "bottleneck", "adapter-transformers"]
    ah_lora = package_manifest(tmp_path / "b", adapter={"type": "lora", "config": {"format": "adapterhub", "r": 8}})
    card = render_card(ah_lora, repo_id="acme/sentiment")
    assert metadata_of(card)["library_name"] == "adapter-transformers"
    assert "model.load_adapter('acme/sentiment', source='hf', set_active=True)" in card


def test_a_peft_format_card_shows_peft_loading_at_the_tag(tmp_path: Path) -> None:
    manifest = with_base(package_manifest(tmp_path, adapter={"type": "lora", "config": {"format": "peft", "r": 4}}))
    assert "PeftModel.from_pretrained(base, 'acme/sentiment', revision='v1.0.0')" in render_card(
        manifest, repo_id="acme/sentiment"
    )


def test_a_card_for_a_registry_installs_by_name_and_names_no_hub_repo(tmp_path: Path) -> None:
    manifest = with_base(package_manifest(tmp_path, adapter={"type": "lora", "config": {"format": "peft", "r": 4}}))
    body = body_of(render_card(manifest))
    assert "adapters install acme/sentiment@1.0.0" in body and "hub.attach(model, 'acme/sentiment@1.0.0')" in body
    assert "hf://" not in body and "PeftModel" not in body and "as tag" not in body


# --- trainable parameters ---------------------------------------------------------------------------


def lora_manifest(tmp_path: Path, modules: dict[str, Any], **config: Any) -> dict[str, Any]:
    manifest = package_manifest(tmp_path, adapter={"type": "lora", "config": {"r": 4, "alpha": 8, **config}})
    return with_base(manifest, architecture={"model_type": "bert", "modules": modules})


def test_lora_count_is_rank_times_in_plus_out_per_module(tmp_path: Path) -> None:
    manifest = lora_manifest(tmp_path, MODULES)
    expected = sum(4 * (info["shape"][0] + info["shape"][1]) for info in MODULES.values())
    assert trainable_parameters(manifest) == expected == 4 * (40 + 40 + 64)
    assert f"{expected:,} (" in body_of(render_card(manifest))
    assert "2106.09685" in body_of(render_card(manifest))


def test_dora_adds_one_magnitude_per_output_feature(tmp_path: Path) -> None:
    manifest = lora_manifest(tmp_path, MODULES, dora=True)
    # out features: linear [out, in] -> 24 each; GPT-2 Conv1D [in, out] -> 48
    assert trainable_parameters(manifest) == 4 * (40 + 40 + 64) + 24 + 24 + 48


@pytest.mark.parametrize(
    "config",
    [{"rank_pattern": {"query": 8}}, {"bias": "all"}, {"modules_to_save": ["classifier"]}],
    ids=["rank_pattern", "bias", "modules_to_save"],
)
def test_count_is_unknown_when_the_formula_does_not_cover_the_config(tmp_path: Path, config: dict[str, Any]) -> None:
    manifest = lora_manifest(tmp_path, MODULES, **config)
    assert trainable_parameters(manifest) is None
    assert "## Trainable parameters\n\nunknown" in body_of(render_card(manifest))


def test_count_is_unknown_without_module_shapes_and_a_recorded_count_wins(tmp_path: Path) -> None:
    manifest = package_manifest(tmp_path)  # make_package records no modules
    assert trainable_parameters(manifest) is None
    manifest["adapter"]["trainable_parameters"] = 123_456
    assert trainable_parameters(manifest) == 123_456
    assert "123,456 (123.5K), as recorded in the manifest" in render_card(manifest)


# --- hostile values ----------------------------------------------------------------------------------

HOSTILE = [
    "x\n---\ninjected: true",
    "---",
    "license: evil",
    "\u2028x\x85y",  # PyYAML writes this back wrongly with allow_unicode: the card must not
    "<script>alert(1)</script>",
    "'quote\" & *alias !tag [list] {map} # comment",
    "\r\n---\r\n",
    "a" * 90 + " ---\n--- b",
]


def test_hostile_values_stay_inside_their_fields(tmp_path: Path) -> None:
    manifest = package_manifest(
        tmp_path,
        description="Great adapter\n---\ninjected: true\n<script>alert(1)</script>\n# not a heading\n\n    code?",
        tags=HOSTILE,
        license="Evil\n---\nbase_model: attacker/model",
    )
    card = render_card(manifest)
    meta = metadata_of(card)
    assert meta == card_metadata(manifest)
    assert set(meta) == {"base_model", "base_model_relation", "library_name", "license", "license_name", "tags"}
    assert meta["base_model"] == "test/base" and meta["tags"][3:] == HOSTILE
    html = MarkdownIt("commonmark").render(body_of(card))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<pre>" not in html.split("<h2>")[0]  # the description makes no code block, heading or rule
    assert html.count("<h1>") == 1 and "<hr" not in html


@settings(max_examples=60)
@given(
    description=st.text(max_size=200),
    tags=st.lists(st.text(min_size=1, max_size=40), max_size=4),
    license=st.text(max_size=40),
)
def test_any_text_round_trips_through_the_front_matter(
    tmp_path_factory: pytest.TempPathFactory, description: str, tags: list[str], license: str
) -> None:
    manifest = {
        "schema_version": 1,
        "name": "acme/x",
        "version": "1.0.0",
        "description": description,
        "license": license,
        "tags": tags,
        "adapter": {"type": "lora", "config": {"r": 2}},
        "base_model": {"name": "org/base"},
        "files": [{"path": "adapter.safetensors", "sha256": "0" * 64, "size": 1}],
    }
    card = render_card(manifest)
    assert metadata_of(card) == card_metadata(manifest)
    rendered = MarkdownIt("commonmark").render(markdown_text(description))
    assert not re.search(r"<(?!/?p>|br ?/?>)", rendered)  # plain paragraphs only: no tag from the text


def test_markdown_text_escapes_block_and_inline_syntax() -> None:
    html = MarkdownIt("commonmark").render(markdown_text("1. one\n- two\n===\n*em* [a](b) `c` <b>&amp;"))
    assert html == "<p>1. one\n- two\n===\n*em* [a](b) `c` &lt;b&gt;&amp;amp;</p>\n"


def test_a_bad_repo_id_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="invalid Hub repository id"):
        render_card(package_manifest(tmp_path), repo_id="not a repo")


# --- completing the publisher's card ---------------------------------------------------------------

AUTHOR_BODY = "\n# My adapter\n\nHand-written.\n\n---\n\nlicense: not front matter\n"


def test_complete_card_keeps_the_body_and_every_value_the_author_set(tmp_path: Path) -> None:
    manifest = with_base(package_manifest(tmp_path, license="MIT", tags=["test", "extra"]))
    existing = "---\nlicense: apache-2.0\nlibrary_name: my-lib\ntags:\n- mine\n- lora\n---\n" + AUTHOR_BODY
    completed = complete_card(existing, manifest)
    assert completed.endswith("---\n" + AUTHOR_BODY) and body_of(completed) == AUTHOR_BODY
    assert metadata_of(completed) == {
        "license": "apache-2.0",
        "library_name": "my-lib",
        "tags": ["mine", "lora", "base_model:adapter:org/base-model", "adapterhub-client", "test", "extra"],
        "base_model": "org/base-model",
        "base_model_relation": "adapter",
    }


def test_complete_card_prepends_front_matter_to_a_card_without_one(tmp_path: Path) -> None:
    manifest = package_manifest(tmp_path)
    existing = "text first\n# Plain card\n\n---\nnot: front matter\n---\n"
    completed = complete_card(existing, manifest)
    assert body_of(completed) == existing and completed.endswith("\n---\n" + existing)
    assert metadata_of(completed) == card_metadata(manifest)


def test_a_complete_card_is_returned_unchanged_and_completing_is_idempotent(tmp_path: Path) -> None:
    manifest = package_manifest(tmp_path)
    once = complete_card("---\n# the author's comment\nlanguage: en\n---\nbody\n", manifest)
    assert complete_card(once, manifest) == once
    rendered = render_card(manifest)
    assert complete_card(rendered, manifest) == rendered


def test_complete_card_keeps_crlf_line_endings(tmp_path: Path) -> None:
    manifest = package_manifest(tmp_path)
    body = "\r\n# Windows card\r\n\r\ntext\r\n"
    completed = complete_card("---\r\nlanguage: en\r\ntags: mine\r\n---" + body, manifest)
    front = completed[: -len(body)]
    assert completed.endswith(body) and "\n" not in front.replace("\r\n", "")
    assert metadata_of(completed)["tags"][0] == "mine" and metadata_of(completed)["language"] == "en"


@pytest.mark.parametrize(
    ("front", "message"),
    [("key: [unclosed\n", "not valid YAML"), ("- a list\n", "not a mapping"), ("tags: {a: 1}\n", "not a list")],
)
def test_broken_author_front_matter_is_an_invalid_package(tmp_path: Path, front: str, message: str) -> None:
    with pytest.raises(InvalidPackageError, match=message) as err:
        complete_card(f"---\n{front}---\nbody\n", package_manifest(tmp_path))
    assert err.value.exit_code == 7 and "\n" not in str(err.value)


def test_an_oversized_card_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    with pytest.raises(InvalidPackageError, match=f"at most {MAX_CARD_BYTES} bytes"):
        complete_card("---\na: 1\n---\n" + "x" * MAX_CARD_BYTES, package_manifest(tmp_path))
