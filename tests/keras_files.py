"""Whole Keras models saved as users save theirs (`model.save("mine.keras")`), for the upload tests:
a small CNN, and the hostile or unfit ones the API refuses."""

import io
import zipfile
from pathlib import Path

SIDE = 32


def small_cnn(path: Path, seed: int = 3) -> Path:
    """A CNN saved for 32x32 RGB: a same-padded convolution, a valid-padded separable one at stride 2, a
    depthwise one in a residual branch, then a classifier head (Flatten, Dense) that only fits 32x32."""
    import keras

    keras.utils.set_random_seed(seed)
    pixels = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Rescaling(1 / 255)(pixels)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="edges")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.SeparableConv2D(16, 3, strides=2, padding="valid", name="parts")(x)
    x = keras.layers.BatchNormalization()(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="mixed")(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.Flatten()(x)
    keras.Model(pixels, keras.layers.Dense(10)(x), name="flowers").save(path)
    return path


def with_lambda(path: Path) -> Path:
    import keras

    pixels = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(pixels)
    keras.Model(pixels, keras.layers.Conv2D(4, 3)(x)).save(path)
    return path


def with_custom_layer(path: Path) -> Path:
    import keras

    @keras.saving.register_keras_serializable(package="mine")
    class Doubled(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2.0

    pixels = keras.Input((SIDE, SIDE, 3))
    keras.Model(pixels, keras.layers.Conv2D(4, 3)(Doubled()(pixels))).save(path)
    return path


def dense_only(path: Path) -> Path:
    import keras

    pixels = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Flatten()(pixels)
    keras.Model(pixels, keras.layers.Dense(4)(x)).save(path)
    return path


def grey(path: Path) -> Path:
    import keras

    keras.Sequential([keras.Input((SIDE, SIDE, 1)), keras.layers.Conv2D(4, 3)]).save(path)
    return path


def any_size(path: Path) -> Path:
    import keras

    keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)]).save(path)
    return path


def with_members(model: Path, extra: dict[str, bytes]) -> bytes:
    """The model's archive with more members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(buffer, "w") as archive:
        for member in source.infolist():
            archive.writestr(member, source.read(member))
        for name, content in extra.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def with_weights_of(model: Path, other: Path) -> bytes:
    """The model's archive holding another model's weights: data the API can't tell apart, that Keras
    refuses on loading."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(other) as donor, zipfile.ZipFile(buffer, "w") as archive:
        for member in source.infolist():
            taken = donor if member.filename == "model.weights.h5" else source
            archive.writestr(member.filename, taken.read(member.filename))
    return buffer.getvalue()


def weights_of(model: Path) -> bytes:
    """The model's model.weights.h5."""
    with zipfile.ZipFile(model) as archive:
        return archive.read("model.weights.h5")


def archive(members: dict[str, bytes]) -> bytes:
    """A zip of these members, as a hand-made upload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as made:
        for name, content in members.items():
            made.writestr(name, content)
    return buffer.getvalue()
