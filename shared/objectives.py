"""What a job's pictures maximise: a weighted sum of terms, Lucid's objective arithmetic in JSON.

No TensorFlow here: the API validates and lists objectives without it (the engine's
worker/engine/objectives.py computes them). A job's `objective` is one term or a list of them, each
with a `weight` (1 by default, negative to push a term down), all on the job's layer:

- `channel`: the mean of the filter's channel (the default: every job before objectives existed);
- `neuron`: the filter's channel at one position, `x` and `y` as fractions of the width and height
  (the centre by default);
- `layer`: the mean square of every activation of the layer (DeepDream);
- `direction`: the mean over positions of the activations' projection on `vector`, a direction in the
  layer's channel space (as many numbers as the layer has channels, not all zero);
- `class`: an ImageNet class's logit (before the softmax), or with `probability` its log-probability
  (after it), on the `logits` layer of a network carrying its classifier; asked for by index (130) or
  name ("flamingo", shared/imagenet_classes.py), stored as the index;
- `diversity`: `n` pictures of each filter at once instead of one, pushed apart by minus the mean
  cosine similarity of their Gram matrices on the layer (Lucid's diversity; its weight 1e2 by
  default). It diversifies the other terms, so it never stands alone, and a job has at most one.

`channel` and `neuron` look at each filter's own channel. `layer` and `direction` don't: a job's
filters are then pictures of the same objective, each from its own starting noise. A filter's `n`
pictures are stored as one, side by side.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shared.imagenet_classes import class_index, class_names

CHANNEL, NEURON, LAYER, DIRECTION, DIVERSITY, CLASS = "channel", "neuron", "layer", "direction", "diversity", "class"
MAX_TERMS = 8
MAX_PICTURES = 8  # a diversity job's pictures per filter: each is rendered, stored and compared with the others
# Terms about each filter's own channel: with only these (and diversity, which adds pictures of the same
# filter), a filter whose channel stays at zero is dead.
PER_FILTER = frozenset({CHANNEL, NEURON, DIVERSITY})


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


class Class(Term):
    """An ImageNet class's logit, before the softmax (or its log-probability), on a classifier's logits."""

    # `class` is a Python keyword: the field is class_, named "class" in JSON both ways.
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    kind: Literal["class"] = "class"
    class_: int | str = Field(
        alias="class", description="the class: its index, 0 to 999, or its name (e.g. 'flamingo'), stored as the index"
    )
    probability: bool = Field(False, description="its log-probability after the softmax instead of its logit")

    @field_validator("class_")
    @classmethod
    def _an_index(cls, wanted: int | str) -> int:
        if isinstance(wanted, str):
            return class_index(wanted)
        if not 0 <= wanted < len(class_names()):
            raise ValueError(f"{wanted} is not a class index: 0 to {len(class_names()) - 1}")
        return wanted


class Diversity(Term):
    """Several pictures of each filter, side by side, pushed apart: minus the mean cosine similarity of
    their Gram matrices on the layer (Lucid's diversity). Beside the terms it diversifies."""

    kind: Literal["diversity"] = "diversity"
    weight: float = Field(100.0, ge=0, le=1e4, description="its weight in the sum (Lucid's 1e2 by default)")
    n: int = Field(4, ge=2, le=MAX_PICTURES, description="how many pictures of each filter")


AnyTerm = Annotated[Channel | Neuron | Layer | Direction | Class | Diversity, Field(discriminator="kind")]


def _diversity_beside_others(terms: list[AnyTerm]) -> list[AnyTerm]:
    diversities = sum(isinstance(term, Diversity) for term in terms)
    if diversities > 1:
        raise ValueError("at most one diversity term: its n is how many pictures each filter gets")
    if diversities == len(terms):
        raise ValueError("diversity pushes a filter's pictures apart while other terms rise: add one, e.g. channel")
    return terms


Objective = Annotated[
    list[AnyTerm],
    Field(min_length=1, max_length=MAX_TERMS, description="terms summed by weight (one term may stand alone)"),
    AfterValidator(_diversity_beside_others),
]
DEFAULT_OBJECTIVE: list[dict[str, Any]] = [Channel().model_dump()]


def parse_term(text: str) -> dict[str, Any]:
    """A term as written on a command line or in a query: JSON (`{"kind": "direction", "vector": [...]}`),
    or `kind[:name=value,...]` (`class:class=flamingo`), each value a number, true, false or else text (the
    spec validates the rest); ValueError naming what is wrong."""
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
        term[name.strip()] = _value(value.strip())
    return term


def _value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def as_terms(objective: Any) -> Any:
    """A request's objective as a list of terms (one term may be given alone)."""
    return [objective] if isinstance(objective, dict) else objective


def is_default(objective: Sequence[Mapping[str, Any]]) -> bool:
    """Whether it is the channel mean alone, as every job before objectives (its cache keys unchanged)."""
    return list(objective) == DEFAULT_OBJECTIVE


def tracks_channels(objective: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every term looks at the filter's own channel (so a filter can be dead)."""
    return all(term["kind"] in PER_FILTER for term in objective)


def pictures_per_filter(objective: Sequence[Mapping[str, Any]]) -> int:
    """How many pictures each filter gets: a diversity term's n, else one."""
    return next((term["n"] for term in objective if term["kind"] == DIVERSITY), 1)


def describe_objectives() -> list[dict[str, Any]]:
    """Each kind of term with its parameters' JSON schema, for /v1/models; `class` with the class names,
    by index."""
    described = [
        {"kind": model.model_fields["kind"].default, "summary": model.__doc__, "schema": model.model_json_schema()}
        for model in (Channel, Neuron, Layer, Direction, Class, Diversity)
    ]
    return [{**entry, "classes": list(class_names())} if entry["kind"] == CLASS else entry for entry in described]
