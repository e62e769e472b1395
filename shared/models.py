"""The networks filterviz shows, as data the API reads without TensorFlow: for each, how Keras builds it,
the input it expects, where its ImageNet weights come from, and its layers worth a picture.

Hand-written here: what a person decides (which layers, the preprocessing, the weights' address and
hash, as keras.applications publishes them). Derived from the built networks (`python -m
worker.architectures` writes shared/model_tables.json, and a test checks it still matches): each
layer's channels and downsampling, and the convolutions up to it, which the cost model and the batch
sizing count.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

TABLES = Path(__file__).with_name("model_tables.json")
KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"

# The layer a network carrying its classifier ends in: its pooled features through ImageNet's 1,000-class
# dense layer, before the softmax, as a 1x1 map with a channel per class (shared/imagenet_classes.py).
LOGITS = "logits"
IMAGENET_CLASSES = 1000

# How a network wants its RGB input (0..255): `caffe` BGR less the ImageNet mean; `tf` scaled to
# -1..1; `torch` to 0..1 then standardised by ImageNet's mean and deviation; `none`: the network
# does it itself (its first layers rescale).
Preprocessing = Literal["caffe", "tf", "torch", "none"]


@dataclass(frozen=True)
class Architecture:
    """A keras.applications network, as filterviz uses it."""

    name: str
    keras_name: str  # the constructor in keras.applications
    preprocessing: Preprocessing
    # The layers shown: every layer whose name matches, in the network's order.
    layer_pattern: str
    description: str
    # Its ImageNet no-top weights: where Keras downloads them from, and the hash Keras checks (md5 or
    # sha256 by length; None where Keras publishes none).
    weights_folder: str
    weights_file: str
    weights_hash: str | None
    # The smallest input side Keras builds it for (Inception's and Xception's valid convolutions need
    # room); VGG's plain convolutions and pools take any side its layer's downsampling allows.
    min_input: int = 32
    # Whether it carries its ImageNet classifier, ending in LOGITS (what the class objective reads); its
    # ImageNet file is then the one with the top. Only where the top is small beside the network.
    classifier: bool = False

    @property
    def weights_url(self) -> str:
        """Where keras.applications downloads the ImageNet no-top file."""
        return f"{KERAS_WEIGHTS}{self.weights_folder}/{self.weights_file}"


_KERAS_FILE = "{}_weights_tf_dim_ordering_tf_kernels_notop.h5"
ARCHITECTURES: dict[str, Architecture] = {
    architecture.name: architecture
    for architecture in (
        Architecture(
            "vgg16", "VGG16", "caffe", r"block\d_conv\d", "VGG16 (2014): its 13 plain 3x3 convolutions",
            "vgg16", _KERAS_FILE.format("vgg16"), "6d6bbae143d832006294945121d1f1fc", min_input=1,
        ),
        Architecture(
            "vgg19", "VGG19", "caffe", r"block\d_conv\d", "VGG19 (2014): its 16 plain 3x3 convolutions",
            "vgg19", _KERAS_FILE.format("vgg19"), "253f8cb515780f3b799900260a226db6", min_input=1,
        ),
        Architecture(
            "resnet50", "ResNet50", "caffe", r"conv1_relu|conv\d_block\d+_out",
            "ResNet50 (2015): each residual block's output, after its ReLU",
            "resnet", _KERAS_FILE.format("resnet50"), "4d473c1dd8becc155b73f8504c6f6626",
        ),
        Architecture(
            "resnet50v2", "ResNet50V2", "tf", r"conv\d_block\d+_out|post_relu",
            "ResNet50 v2 (2016, pre-activation): each residual block's output, then the last ReLU",
            "resnet", _KERAS_FILE.format("resnet50v2"), "fac2f116257151a9d068a22e544a4917",
        ),
        Architecture(
            "inception_v3", "InceptionV3", "tf", r"mixed\d+", "Inception v3 (2015): each mixed block's concatenation",
            "inception_v3", _KERAS_FILE.format("inception_v3"), "bcbd6486424b2319ff4ef7d526e38f63", min_input=75,
        ),
        Architecture(
            "xception", "Xception", "tf", r"block1_conv\d_act|block\d+_sepconv\d_act",
            "Xception (2016): the ReLU of each of its convolutions",
            "xception", _KERAS_FILE.format("xception"), "b0042744bf5b25fce3cb969f33bebb97", min_input=71,
        ),
        Architecture(
            "mobilenet_v2", "MobileNetV2", "tf", r"Conv1_relu|(expanded_conv|block_\d+)_project_BN|out_relu|logits",
            "MobileNet v2 (2018): each block's linear bottleneck, before its residual add, and its class logits",
            "mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", None, classifier=True,
        ),
        Architecture(
            "densenet121", "DenseNet121", "torch", r"conv1_relu|conv\d_block\d+_concat|pool\d_relu|relu",
            "DenseNet121 (2016): each dense block's concatenation",
            "densenet", _KERAS_FILE.format("densenet121"), "30ee3e1110167f948a6b9946edeeb738",
        ),
        Architecture(
            "efficientnetv2b0", "EfficientNetV2B0", "none", r"stem_activation|block\d[a-z]_project_bn|top_activation",
            "EfficientNet v2 B0 (2021): each block's projection, before its residual add",
            "efficientnet_v2", "efficientnetv2-b0_notop.h5", "893217f2bb855e2983157299931e43ff",
        ),
        Architecture(
            "convnext_tiny", "ConvNeXtTiny", "none", r"convnext_tiny_stage_\d_block_\d+_identity",
            "ConvNeXt Tiny (2022): each block's residual branch, scaled",
            "convnext", "convnext_tiny_notop.h5", "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
        ),
    )
}  # fmt: skip
DEFAULT_MODEL = "vgg16"

# A model's name as a pydantic field type: one of ARCHITECTURES (the schema's enum). Built from data,
# so the type checker sees a str.
if TYPE_CHECKING:
    ModelName = str
else:
    ModelName = Literal[tuple(ARCHITECTURES)]


def shown(architecture: Architecture, layer_name: str) -> bool:
    """Whether a layer of the network is one filterviz shows."""
    return re.fullmatch(architecture.layer_pattern, layer_name) is not None


def seed_preprocessing(model: str, preprocessing: Preprocessing) -> Preprocessing:
    """What method `seed` feeds a network that wants `preprocessing`: VGG16 raw pixels, as the Keras
    example does; every other network its own preprocessing."""
    return "none" if model == DEFAULT_MODEL else preprocessing
