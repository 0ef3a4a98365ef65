"""`adapters attach`: check adapters against a local model, then attach them (or merge to disk)."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from ..errors import UsageError
from .commands import common
from .output import emit_json, warn


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The local base model directory (safetensors, as save_pretrained writes it).")
@click.option("--check", "check_only", is_flag=True, help="Only check compatibility; download and load nothing.")
@click.option("--strict", is_flag=True, help="Require the exact base weights (refuse same-architecture matches).")
@click.option("--merge", is_flag=True, help="Merge the LoRA adapters into a copy of the checkpoint.")
@click.option("--output", type=click.Path(file_okay=False), help="Where --merge writes the merged checkpoint.")
@common
def attach(hub: Any, refs: tuple[str, ...], model_dir: str, check_only: bool, strict: bool, merge: bool,
           output: str | None, as_json: bool) -> None:
    """Check REFS against the model in --model, then attach them (proving the weights fit) or,
    with --merge --output OUT, write the base with the LoRA adapters merged, tensor by tensor."""
    if merge and not output:
        raise click.UsageError("--merge needs --output OUT")
    if output and not merge:
        raise click.UsageError("--output is only used with --merge")
    start = time.perf_counter()
    items, verdicts = hub.resolve_for_attach(refs, model_dir, strict=strict)
    report: dict[str, Any] = {
        "model": model_dir,
        "adapters": [{"name": i.name, "version": i.version, "type": i.manifest["adapter"]["type"],
                      "compatibility": v.to_json()} for i, v in zip(items, verdicts)],
    }
    if not as_json:
        for item, verdict in zip(items, verdicts):
            line = f"{item.name} {item.version}: {verdict.kind}"
            click.echo(line)
            if verdict.kind != "exact":
                warn(verdict.message)
    if merge:
        not_lora = [i.name for i in items if i.manifest["adapter"]["type"] != "lora"]
        if not_lora:
            raise UsageError(f"--merge: {', '.join(not_lora)} cannot be merged into the base weights "
                             "(only LoRA adapters merge; attach bottleneck adapters at run time)")
    if check_only:
        _finish(report, as_json, start)
        return
    installed = hub.install_resolved(items)
    if merge:
        from ..formats.checkpoint import merge_checkpoint, read_lora_package

        adapters = [read_lora_package(i.path) for i in installed]
        result = merge_checkpoint(model_dir, adapters, output)
        report["merged"] = result
        if not as_json:
            click.echo(f"merged {len(adapters)} adapter(s) into {result['merged_tensors']} tensors -> {result['output']}")
    else:
        report["attached"] = _attach(model_dir, installed)
        if not as_json:
            for a in report["attached"]:
                click.echo(f"attached {a['adapter']}: {a['modules']} modules, +{a['parameters']:,} parameters "
                           f"({a['parameters_share']}), e.g. {', '.join(a['examples'])}")
    _finish(report, as_json, start)


def _attach(model_dir: str, installed: list[Any]) -> list[dict[str, Any]]:
    """Load the base model and the adapters' weights onto it (strict: every key must land)."""
    try:
        import transformers
    except ImportError:
        raise UsageError("attaching onto a model directory needs `transformers` (pip install transformers)") from None
    from ..nn.base import adapter_state
    from ..nn.model import list_adapters, load_adapter

    # the class the checkpoint was saved from (so heads such as lm_head exist), else AutoModel
    config = transformers.AutoConfig.from_pretrained(model_dir)
    cls = next((getattr(transformers, a) for a in (config.architectures or []) if hasattr(transformers, a)),
               transformers.AutoModel)
    model = cls.from_pretrained(model_dir)
    total = sum(p.numel() for p in model.parameters())
    out = []
    for inst in installed:
        name = load_adapter(model, inst.path, name=re.sub(r"[^A-Za-z0-9_]", "_", inst.name))  # no "." in torch names
        info = next(a for a in list_adapters(model) if a.name == name)
        out.append({"adapter": inst.name, "name": name, "modules": info.modules, "parameters": info.params,
                    "parameters_share": f"{100 * info.params / total:.2f}% of {total / 1e6:.1f}M",
                    "examples": adapter_state(model).modules[name][:3]})
    return out


def _finish(report: dict[str, Any], as_json: bool, start: float) -> None:
    report["seconds"] = round(time.perf_counter() - start, 3)
    if as_json:
        emit_json(report)
