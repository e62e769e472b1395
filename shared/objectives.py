"""What a job's pictures maximise: a weighted sum of terms, Lucid's objective arithmetic in JSON.

No TensorFlow here: the API validates and lists objectives without it (the engine's
worker/engine/objectives.py computes them). A job's `objective` is one term or a list of them, each
with a `weight` (1 by default, negative to push a term down), all on the job's layer:

- `channel`: the mean of the filter's channel (the default: every job before objectives existed);
- `neuron`: the filter's channel at one position, `x` and `y` as fractions of the width and height
  (the centre by default);
- `layer`: the mean square of every activation of the layer (DeepDream);
- `direction`: the mean over positions of the activations' projection on `vector`, a direction in the
  layer's channel space (as many numbers as the layer has channels, not all zero).

`channel` and `neuron` look at each filter's own channel. `layer` and `direction` don't: a job's
filters are then pictures of the same objective, each from its own starting noise.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

CHANNEL, NEURON, LAYER, DIRECTION = "channel", "neuron", "layer", "direction"
MAX_TERMS = 8
# Terms about each filter's own channel: with only these, a filter whose channel stays at zero is dead.
PER_FILTER = frozenset({CHANNEL, NEURON})


class Term(BaseModel):
    """What every term is: strict, finite numbers and no unknown field, with a weight."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    weight: float = Field(1.0, ge=-1e4, le=1e4, description="its weight in the sum (negative: pushed down)")


class Channel(Term):
    """The mean of the filter's channel."""

    kind: Literal["channel"] = "channel"


class Neuron(Term):
    """The filter's channel at one position of the layer's output."""

    kind: Literal["neuron"] = "neuron"
    x: float = Field(0.5, ge=0, le=1, description="the position across, 0 (left) to 1 (right)")
    y: float = Field(0.5, ge=0, le=1, description="the position down, 0 (top) to 1 (bottom)")


class Layer(Term):
    """The mean square of every activation of the layer (DeepDream)."""

    kind: Literal["layer"] = "layer"


class Direction(Term):
    """The activations' mean projection on a direction in the layer's channel space."""

    kind: Literal["direction"] = "direction"
    vector: list[float] = Field(min_length=1, max_length=4096, description="one number per channel of the layer")

    @field_validator("vector")
    @classmethod
    def _not_zero(cls, vector: list[float]) -> list[float]:
        if not any(vector):
            raise ValueError("the direction is all zeros")
        return vector


AnyTerm = Annotated[Channel | Neuron | Layer | Direction, Field(discriminator="kind")]
Objective = Annotated[
    list[AnyTerm],
    Field(min_length=1, max_length=MAX_TERMS, description="terms summed by weight (one term may stand alone)"),
]
DEFAULT_OBJECTIVE: list[dict[str, Any]] = [Channel().model_dump()]
_TERMS = TypeAdapter(list[AnyTerm])


def parse_term(text: str) -> dict[str, Any]:
    """A term as written on a command line or in a query: JSON (`{"kind": "direction", "vector": [...]}`),
    or `kind[:name=value,...]` with numbers for values (the spec validates the rest); ValueError naming
    what is wrong."""
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(parsed, dict):
            raise ValueError("a JSON object is needed")
        return parsed
    kind, _, given = text.partition(":")
    term: dict[str, Any] = {"kind": kind}
    for pair in filter(None, given.split(",")):
        name, _, value = pair.partition("=")
        try:
            term[name.strip()] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise ValueError(f"{name} must be a number") from None
    return term


def as_terms(objective: Any) -> Any:
    """A request's objective as a list of terms (one term may be given alone)."""
    return [objective] if isinstance(objective, dict) else objective


def resolve(objective: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored form: every term validated, with its defaults filled in."""
    return [term.model_dump() for term in _TERMS.validate_python(list(objective))]


def is_default(objective: Sequence[Mapping[str, Any]]) -> bool:
    """Whether it is the channel mean alone, as every job before objectives (its cache keys unchanged)."""
    return list(objective) == DEFAULT_OBJECTIVE


def tracks_channels(objective: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every term looks at the filter's own channel (so a filter can be dead)."""
    return all(term["kind"] in PER_FILTER for term in objective)


def describe_objectives() -> list[dict[str, Any]]:
    """Each kind of term with its parameters' JSON schema, for /v1/models."""
    return [
        {"kind": model.model_fields["kind"].default, "summary": model.__doc__, "schema": model.model_json_schema()}
        for model in (Channel, Neuron, Layer, Direction)
    ]
