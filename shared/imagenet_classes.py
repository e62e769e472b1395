"""The 1,000 ImageNet classes a classifier's logits stand for, in their order, as Keras' own
imagenet_class_index.json names them (shipped here: Keras downloads that file at run time, and
workers never download). A class is asked for by its index or its name."""

import json
from functools import cache
from pathlib import Path

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.json")


@cache
def class_names() -> tuple[str, ...]:
    """Each class's name, by index (WordNet's, underscores for spaces: 'great_white_shark')."""
    return tuple(name for _, name in json.loads(CLASSES_FILE.read_text()))


def class_index(name: str) -> int:
    """The index of the class named `name` (case and spaces aside where that leaves one);
    ValueError naming the problem, and the indices where a name is given to two classes."""
    names = class_names()
    wanted = name.strip().replace(" ", "_")
    for same in (lambda n: n == wanted, lambda n: n.lower() == wanted.lower()):
        found = [index for index, candidate in enumerate(names) if same(candidate)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(f"{name!r} names classes {' and '.join(map(str, found))}: give the index")
    raise ValueError(f"no ImageNet class is named {name!r} (GET /v1/models lists the names)")
