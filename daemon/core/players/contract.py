"""The model contract: what ``model.json`` says about its ``model.onnx``.

A contract names the style, the encoding (vocabulary, grid, transposition rule, conditions) and
every tensor of the ONNX graph with its role. It is written by ``partimento export`` and is the
only place a model's vocabulary lives; the daemon reads a model through it and nothing else.

Pure: it turns dictionaries into checked frozen objects and back; reading files is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from partimento.core.errors import PartimentoError
from partimento.core.music.encoding import Vocabulary

FORMAT = "partimento-model/1"

ROLES = ("token", "condition", "state-in", "state-out", "logits", "given", "noise")
"""``token``: a symbol index read through a vocabulary; ``condition``: a per-step feature
(bar position, fermata, mode); ``state-in``/``state-out``: recurrent state carried between
steps, each ``state-in`` paired with one ``state-out``; ``logits``: scores over a vocabulary;
``given``: a token already chosen this step that conditions a later head; ``noise``: the
random vector a generator (a GAN's phrase generator) writes from."""

DTYPES = ("int32", "int64", "float32")
KINDS = ("live-harmonizer", "offline-harmonizer", "lookahead-harmonizer", "continuation")


class ContractError(PartimentoError, ValueError):
    """A ``model.json`` that is not a valid contract."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int | str, ...]  # ints are fixed sizes, strings name a free axis
    dtype: str
    role: str
    voice: str | None = None  # which voice a token, given or logits tensor speaks of
    pairs_with: str | None = None  # a state-in's state-out and back

    def __post_init__(self) -> None:
        if not self.name:
            raise ContractError("a tensor has no name")
        if self.dtype not in DTYPES:
            raise ContractError(
                f"tensor {self.name}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}"
            )
        if self.role not in ROLES:
            raise ContractError(
                f"tensor {self.name}: role {self.role!r} is not one of {', '.join(ROLES)}"
            )
        if self.role in ("state-in", "state-out") and not self.pairs_with:
            raise ContractError(f"tensor {self.name}: a {self.role} needs pairs_with")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tensor:
        try:
            return cls(
                name=str(d["name"]),
                shape=tuple(d["shape"]),
                dtype=str(d["dtype"]),
                role=str(d["role"]),
                voice=d.get("voice"),
                pairs_with=d.get("pairs_with"),
            )
        except KeyError as exc:
            raise ContractError(f"a tensor entry lacks {exc.args[0]!r}") from None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "role": self.role,
        }
        if self.voice:
            d["voice"] = self.voice
        if self.pairs_with:
            d["pairs_with"] = self.pairs_with
        return d


@dataclass(frozen=True)
class Contract:
    name: str
    style: str
    kind: str
    encoding: dict[str, Any]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, Any] = field(default_factory=dict)
    """A live harmonizer's tenor and alto heads as numpy weights
    (:mod:`partimento.core.players.heads`):
    ``file`` beside ``model.onnx``, its ``sha256``, and ``source``, the state output the heads
    read. Empty: the graph alone runs them."""
    vocabulary: Vocabulary = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ContractError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        try:
            symbols = self.encoding["vocabulary"]
        except KeyError:
            raise ContractError("encoding has no vocabulary") from None
        try:
            object.__setattr__(self, "vocabulary", Vocabulary(tuple(symbols)))
        except ValueError as exc:
            raise ContractError(f"vocabulary: {exc}") from None
        names = [t.name for t in self.inputs + self.outputs]
        if len(set(names)) != len(names):
            raise ContractError("tensor names repeat")
        ins = {t.name: t for t in self.inputs}
        outs = {t.name: t for t in self.outputs}
        for t in self.inputs:
            if t.role == "state-in" and (
                t.pairs_with not in outs or outs[t.pairs_with].role != "state-out"
            ):
                raise ContractError(
                    f"state input {t.name} pairs with {t.pairs_with!r}, which is no state output"
                )
        for t in self.outputs:
            if t.role == "state-out" and (
                t.pairs_with not in ins or ins[t.pairs_with].role != "state-in"
            ):
                raise ContractError(
                    f"state output {t.name} pairs with {t.pairs_with!r}, which is no state input"
                )

        if self.heads:
            missing = [k for k in ("file", "sha256", "source") if k not in self.heads]
            if missing:
                raise ContractError(f"heads lack {', '.join(missing)}")
            source = outs.get(self.heads["source"])
            if source is None or source.role != "state-out":
                raise ContractError(
                    f"heads read {self.heads['source']!r}, which is no state output"
                )

    @property
    def states(self) -> tuple[tuple[Tensor, Tensor], ...]:
        """(state-in, state-out) pairs."""
        outs = {t.name: t for t in self.outputs}
        return tuple((t, outs[str(t.pairs_with)]) for t in self.inputs if t.role == "state-in")

    def input(self, role: str, voice: str | None = None) -> Tensor:
        return _one(self.inputs, role, voice, self.name)

    def output(self, role: str, voice: str | None = None) -> Tensor:
        return _one(self.outputs, role, voice, self.name)

    def inputs_with(self, role: str) -> tuple[Tensor, ...]:
        return tuple(t for t in self.inputs if t.role == role)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Contract:
        if not isinstance(d, dict):
            raise ContractError("model.json is not a JSON object")
        if d.get("format") != FORMAT:
            raise ContractError(f"format is {d.get('format')!r}, expected {FORMAT!r}")
        try:
            return cls(
                name=str(d["name"]),
                style=str(d["style"]),
                kind=str(d["kind"]),
                encoding=dict(d["encoding"]),
                inputs=tuple(Tensor.from_dict(t) for t in d["tensors"]["inputs"]),
                outputs=tuple(Tensor.from_dict(t) for t in d["tensors"]["outputs"]),
                training=dict(d.get("training", {})),
                evaluation=dict(d.get("evaluation", {})),
                versions=dict(d.get("versions", {})),
                heads=dict(d.get("heads", {})),
            )
        except KeyError as exc:
            raise ContractError(f"model.json lacks {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise ContractError(f"model.json is malformed: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "style": self.style,
            "kind": self.kind,
            "encoding": self.encoding,
            "tensors": {
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
            },
            "training": self.training,
            "evaluation": self.evaluation,
            "versions": self.versions,
            **({"heads": self.heads} if self.heads else {}),
        }


def _one(tensors: tuple[Tensor, ...], role: str, voice: str | None, model: str) -> Tensor:
    found = [t for t in tensors if t.role == role and (voice is None or t.voice == voice)]
    if len(found) != 1:
        what = f"{role} tensor" + (f" for {voice}" if voice else "")
        raise ContractError(f"model {model}: expected one {what}, found {len(found)}")
    return found[0]
