"""Task heads of adapters, in memory: trained copies of a model's own modules and prediction heads.

A task adapter often trains more than its adapter layers: the classifier it was fine-tuned with.
Two kinds of head, both :class:`~.base.AdapterLayer` s carrying the adapter's name, so the
model-level API (``nn.model``: activate, delete, count, save, strict loads) treats them like the
adapter's other modules:

* :class:`ModuleCopy` (``ModuleCopy("classifier")``, PEFT's ``modules_to_save``): a
  :class:`ModuleCopyLayer` wraps the model's module at that path, keeps the original as
  ``base_layer`` and one trained copy per adapter; while the adapter is active its copy runs in
  the original's place (PEFT's ``ModulesToSaveWrapper``), so deactivating or deleting the adapter
  gives the base back unchanged. Its tensors are the copy's ``state_dict()`` under the module's
  path (``classifier.weight``, ``classifier.bias``).
* :class:`HeadConfig` (AdapterHub's prediction heads: classification, multi-label classification,
  tagging, multiple choice, question answering): a :class:`PredictionHead` with AdapterHub's layer
  layout (``[dropout, linear, activation] * (layers - 1) + [dropout, linear]``, indexed like an
  ``nn.Sequential``), for a base model *without* a head (``BertModel``). The model's forward is left
  as it is; the heads sit in one :class:`HeadLayer` at ``model.heads`` (:data:`HEADS_PATH`), one
  entry per adapter, and run on the base model's output::

      outputs = model(**batch)                      # the base model's output, unchanged
      logits = head_output(model, outputs)          # nn.model.head_output: the active adapter's head
      logits = model.heads["sentiment"](outputs)    # the same, by name

  Its tensors are ``heads.<index>.<param>`` (``heads.1.weight``: AdapterHub's
  ``heads.<name>.1.weight`` without the name).

Sequence-level heads (classification, multi-label, multiple choice) read the first token of the
last hidden state (``[CLS]``), or ``pooler_output`` with ``use_pooler``; tagging and question
answering read every token. In memory only: which file holds a head is :mod:`..formats`' business.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import AdapterConfigError, AdapterWeightsError, UsageError
from .base import AdapterLayer, check_bool, check_choice, check_fraction, config_error, is_int

# one table of parameter-free activations for every adapter module (bottleneck adapters and heads)
from .bottleneck import _ACTIVATIONS

HEADS_PATH = "heads"  # the model attribute holding the prediction heads (AdapterHub's name too)
CLASSIFICATION = "classification"
MULTILABEL = "multilabel_classification"
TAGGING = "tagging"
MULTIPLE_CHOICE = "multiple_choice"
QUESTION_ANSWERING = "question_answering"
HEAD_TYPES = (CLASSIFICATION, MULTILABEL, TAGGING, MULTIPLE_CHOICE, QUESTION_ANSWERING)
SEQUENCE_HEADS = (CLASSIFICATION, MULTILABEL, MULTIPLE_CHOICE)  # one vector per sequence: [CLS] or the pooler

__all__ = [
    "HEADS_PATH",
    "HEAD_TYPES",
    "HeadConfig",
    "HeadLayer",
    "HeadSpec",
    "ModuleCopy",
    "ModuleCopyLayer",
    "PredictionHead",
]


@dataclasses.dataclass(frozen=True)
class ModuleCopy:
    """A trained copy of the model's module at `path` that runs in its place while the adapter is
    active (PEFT's ``modules_to_save``: ``classifier`` of a ``BertForSequenceClassification``)."""

    path: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path or self.path.startswith(".") or self.path.endswith("."):
            raise config_error(self, "path", "a module path such as 'classifier'", self.path)


@dataclasses.dataclass
class HeadConfig:
    """An AdapterHub prediction head. ``num_labels`` is the number of choices for ``multiple_choice``;
    ``dropout`` None takes the model config's ``classifier_dropout`` or ``hidden_dropout_prob`` (as
    AdapterHub does; it only matters in training); ``label2id`` is kept for the user (``id2label``)."""

    head_type: str = CLASSIFICATION
    num_labels: int = 2
    layers: int = 2
    activation_function: str | None = "tanh"
    use_pooler: bool = False
    bias: bool = True
    dropout: float | None = None
    label2id: dict[str, int] | None = None

    def __post_init__(self) -> None:
        check_choice(self, "head_type", self.head_type, HEAD_TYPES)
        for field in ("num_labels", "layers"):
            value = getattr(self, field)
            if not is_int(value) or value <= 0:
                raise config_error(self, field, "a positive integer", value)
        if self.activation_function == "":
            self.activation_function = None
        if self.activation_function is not None and (
            not isinstance(self.activation_function, str) or self.activation_function.lower() not in _ACTIVATIONS
        ):
            raise config_error(
                self,
                "activation_function",
                f"None or one of {', '.join(sorted(_ACTIVATIONS))}",
                self.activation_function,
            )
        check_bool(self, "use_pooler", self.use_pooler)
        if self.use_pooler and self.head_type not in SEQUENCE_HEADS:
            raise AdapterConfigError(f"HeadConfig.use_pooler applies to {', '.join(SEQUENCE_HEADS)} heads only")
        check_bool(self, "bias", self.bias)
        if self.dropout is not None:
            check_fraction(self, "dropout", self.dropout)
        if self.label2id is not None and not (
            isinstance(self.label2id, Mapping)
            and all(isinstance(k, str) and is_int(v) for k, v in self.label2id.items())
        ):
            raise config_error(self, "label2id", "None or a mapping of label names to integers", self.label2id)
        if self.label2id is not None:
            self.label2id = dict(self.label2id)

    @property
    def id2label(self) -> dict[int, str] | None:
        return {i: label for label, i in self.label2id.items()} if self.label2id is not None else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadConfig:
        """The config a :meth:`to_dict` describes; keys that are not fields are ignored."""
        if not isinstance(data, Mapping):
            raise AdapterConfigError(f"a head config must be a mapping, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


HeadSpec = ModuleCopy | HeadConfig


def _dropout_of(config: HeadConfig, model_config: object) -> float:
    """AdapterHub's rule (``PredictionHead._get_dropout_prob``): the head's own, then the model's."""
    if config.dropout is not None:
        return float(config.dropout)
    for attr in ("classifier_dropout", "hidden_dropout_prob"):
        value = getattr(model_config, attr, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


class PredictionHead(nn.Sequential):
    """AdapterHub's head layout on a hidden size: ``[Dropout, Linear(h, h), activation] * (layers - 1)
    + [Dropout, Linear(h, num_labels)]`` (``Linear(h, 1)`` for multiple choice), so the parameter
    names (``1.weight``, ``4.weight``, ...) are AdapterHub's."""

    def __init__(self, config: HeadConfig, hidden_size: int, dropout: float = 0.0) -> None:
        modules: list[nn.Module] = []
        for i in range(config.layers):
            modules.append(nn.Dropout(dropout))
            if i < config.layers - 1:
                modules.append(nn.Linear(hidden_size, hidden_size))
                if config.activation_function:
                    modules.append(_ACTIVATIONS[config.activation_function.lower()]())
            else:
                out = 1 if config.head_type == MULTIPLE_CHOICE else config.num_labels
                modules.append(nn.Linear(hidden_size, out, bias=config.bias))
        super().__init__(*modules)
        self.head_config = config

    def head_input(self, outputs: Any) -> torch.Tensor:
        """What the head reads from a base model's output (a ``ModelOutput``, its tuple form, or the
        last hidden state itself): ``[CLS]``, ``pooler_output``, or every token."""
        config = self.head_config
        if config.use_pooler:
            pooled = _pooler_output(outputs)
            if pooled is None:
                raise UsageError(
                    f"this {config.head_type} head reads pooler_output, which the model's output lacks "
                    "(load the base model with its pooler)"
                )
            return pooled
        hidden = _last_hidden_state(outputs)
        return hidden[:, 0] if config.head_type in SEQUENCE_HEADS else hidden

    def forward(self, outputs: Any) -> torch.Tensor:
        """Logits: ``[batch, num_labels]`` (sequence heads), ``[batch, num_choices]`` (multiple choice;
        the batch holds ``batch * num_choices`` sequences), ``[batch, seq, num_labels]`` (tagging,
        question answering: start and end logits are ``logits.unbind(-1)``)."""
        x = self.head_input(outputs)
        for module in self:
            x = module(x)
        if self.head_config.head_type == MULTIPLE_CHOICE:
            x = x.view(-1, self.head_config.num_labels)
        return x


def _last_hidden_state(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        hidden: Any = outputs
    elif isinstance(outputs, Mapping) and "last_hidden_state" in outputs:
        hidden = outputs["last_hidden_state"]
    elif isinstance(outputs, (tuple, list)) and outputs:
        hidden = outputs[0]
    else:
        hidden = getattr(outputs, "last_hidden_state", None)
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        raise UsageError(
            "a head takes the base model's output (or its last_hidden_state [batch, seq, hidden]), "
            f"got {type(outputs).__name__}"
        )
    return hidden


def _pooler_output(outputs: Any) -> torch.Tensor | None:
    if isinstance(outputs, Mapping):
        pooled = outputs.get("pooler_output")
    elif isinstance(outputs, (tuple, list)):
        pooled = outputs[1] if len(outputs) > 1 else None
    else:
        pooled = getattr(outputs, "pooler_output", None)
    return pooled if isinstance(pooled, torch.Tensor) else None


def _load_strict(module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy `tensors` into `module`'s state (keys and shapes checked first; nothing changes on failure)."""
    own = module.state_dict()
    problems = [f"missing {k}" for k in own if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in own]
    problems += [
        f"wrong shape {k} {tuple(t.shape)} (expected {tuple(own[k].shape)})"
        for k, t in tensors.items()
        if k in own and t.shape != own[k].shape
    ]
    if problems:
        raise AdapterWeightsError(", ".join(problems[:8]))
    with torch.no_grad():
        for k, t in tensors.items():
            own[k].copy_(t)  # state_dict() tensors share storage with the parameters and buffers


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: t.detach() for k, t in module.state_dict().items()}


_OWN_ATTRIBUTES = frozenset({"base_layer", "copies", "active_adapters", "merged_adapters", "_stash"})


class ModuleCopyLayer(AdapterLayer):
    """Wraps one module of the model and keeps each adapter's trained copy of it (``copies``); the
    active adapter's copy runs instead of the original. Merging writes the copy's tensors into the
    original (kept aside for ``unmerge``), so ``merge_and_unload`` leaves the trained module."""

    kind: ClassVar[str] = "module copy"

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.copies = nn.ModuleDict()
        self._stash: dict[str, torch.Tensor] = {}  # the original's tensors while a copy is merged in

    def __getattr__(self, name: str) -> Any:
        # model code reads the wrapped module's attributes (`classifier.out_features`, `score.weight`):
        # answer from the module that runs, as PEFT's ModulesToSaveWrapper does
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in _OWN_ATTRIBUTES or "_modules" not in self.__dict__:
                raise  # half-built (copy, unpickling) or our own: never ask the module that runs
            return getattr(self._running(), name)

    @property
    def adapter_names(self) -> list[str]:
        return list(self.copies.keys())

    def add(self, name: str) -> None:
        duplicate = copy.deepcopy(self.base_layer)
        duplicate.requires_grad_(True)
        duplicate.train(self.training)
        try:
            self.copies[name] = duplicate
        except KeyError:  # a name that nn.Module keeps for itself ("training", ...)
            raise UsageError(f"{name!r} cannot name an adapter with a module copy") from None

    def delete_adapter(self, name: str) -> None:
        del self.copies[name]
        self.active_adapters = [n for n in self.active_adapters if n != name]

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        return _state(self.copies[name])

    def load_adapter_state_dict(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        _load_strict(self.copies[name], tensors)

    def adapter_parameters(self, name: str) -> Iterator[nn.Parameter]:
        yield from self.copies[name].parameters()

    def _running(self) -> nn.Module:
        if not self.merged_adapters:
            for name in self.active_adapters:
                if name in self.copies:
                    return self.copies[name]
        return self.base_layer

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._running()(*args, **kwargs)

    def check_merge(self, names: list[str]) -> None:
        if len([n for n in names if n in self.copies]) + len(self.merged_adapters) > 1:
            raise UsageError("only one adapter's copy of a module can be merged into it")

    def merge(self, names: list[str]) -> None:
        todo = [n for n in names if n in self.copies and n not in self.merged_adapters]
        if not todo:
            return
        self.check_merge(todo)
        base = self.base_layer.state_dict()
        self._stash = {k: t.detach().clone() for k, t in base.items()}
        with torch.no_grad():
            for k, t in self.copies[todo[0]].state_dict().items():
                base[k].copy_(t)
        self.merged_adapters.append(todo[0])

    def unmerge(self) -> None:
        base = self.base_layer.state_dict()
        with torch.no_grad():
            for k, t in self._stash.items():
                base[k].copy_(t)
        self._stash = {}
        self.merged_adapters.clear()

    def _refresh(self) -> None:
        if not self.merged_adapters:
            self._stash = {}  # a failed safe merge restored the weights itself


class HeadLayer(AdapterLayer):
    """``model.heads``: the adapters' prediction heads, one :class:`PredictionHead` per adapter name.

    It wraps nothing and is not on the base model's forward path; ``model.heads(outputs)`` runs the
    active adapter's head, ``model.heads[name](outputs)`` a named one. Merging has nothing to fold
    (the head keeps running on the model's output)."""

    kind: ClassVar[str] = "head"

    @property
    def adapter_names(self) -> list[str]:
        return list(self._modules)

    def __getitem__(self, name: str) -> PredictionHead:
        head = self._modules.get(name)
        if not isinstance(head, PredictionHead):
            raise UsageError(f"no prediction head for adapter {name!r}; heads: {self.adapter_names or 'none'}")
        return head

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def add(self, name: str, head: PredictionHead) -> None:
        if name in self._modules:
            raise UsageError(f"adapter {name!r} already has a prediction head")
        try:
            self.add_module(name, head)
        except KeyError:  # a name that nn.Module keeps for itself ("training", "forward", ...)
            raise UsageError(f"{name!r} cannot name an adapter with a prediction head") from None

    def delete_adapter(self, name: str) -> None:
        del self._modules[name]
        self.active_adapters = [n for n in self.active_adapters if n != name]

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        return _state(self[name])

    def load_adapter_state_dict(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        _load_strict(self[name], tensors)

    def adapter_parameters(self, name: str) -> Iterator[nn.Parameter]:
        yield from self[name].parameters()

    def active_head(self) -> str:
        """The one active adapter with a head."""
        active = [n for n in self.active_adapters if n in self._modules]
        if len(active) != 1:
            raise UsageError(
                f"{len(active)} active adapters have a prediction head ({', '.join(active) or 'none'}); "
                f"name one of {self.adapter_names}"
            )
        return active[0]

    def forward(self, outputs: Any, name: str | None = None) -> torch.Tensor:
        return self[name if name is not None else self.active_head()](outputs)

    def merge(self, names: list[str]) -> None:
        self.merged_adapters.extend(n for n in names if n in self._modules and n not in self.merged_adapters)

    def unmerge(self) -> None:
        self.merged_adapters.clear()


def build_head(config: HeadConfig, model: nn.Module) -> PredictionHead:
    """A new head for `model` (its ``config.hidden_size``), initialised as AdapterHub does through the
    model's ``_init_weights`` for BERT-like models: N(0, initializer_range) weights, zero biases; on
    the model's device and dtype."""
    model_config = getattr(model, "config", None)
    hidden = getattr(model_config, "hidden_size", None)
    if not is_int(hidden) or hidden <= 0:
        raise UsageError("a prediction head needs the model's hidden size: the model has no config.hidden_size")
    head = PredictionHead(config, hidden, _dropout_of(config, model_config))
    std = getattr(model_config, "initializer_range", 0.02)
    std = float(std) if isinstance(std, (int, float)) and not isinstance(std, bool) else 0.02
    with torch.no_grad():
        for module in head:
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
    ref = next(model.parameters(), None)
    if ref is not None and ref.device.type != "meta":
        head.to(device=ref.device, dtype=ref.dtype if ref.dtype.is_floating_point else None)
    head.train(model.training)
    return head
