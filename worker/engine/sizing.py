"""How many images fit in one step's memory."""

from shared.layers import ConvLayer, convolutions_up_to, layer_named
from shared.models import DEFAULT_MODEL

BYTES_PER_FLOAT = 4


def activation_bytes_per_image(layer: ConvLayer, image_size: int, model: str = DEFAULT_MODEL) -> int:
    """Rough memory one image needs in a step: each convolution's output up to `layer`, kept for the
    backward pass plus its gradient and the activation's mask (about three copies)."""
    total = image_size * image_size * 3
    for conv in convolutions_up_to(layer, model):
        side = max(1, image_size // conv.downsampling)
        total += side * side * conv.channels
    return 3 * total * BYTES_PER_FLOAT


def auto_batch_size(
    layer_name: str, image_size: int, filter_count: int, memory_budget_mb: int, model: str = DEFAULT_MODEL
) -> int:
    """The largest batch whose activations fit the memory budget, but no more than the filters asked for."""
    per_image = activation_bytes_per_image(layer_named(layer_name, model), image_size, model)
    fits = max(1, (memory_budget_mb * 2**20) // per_image)
    return int(min(fits, filter_count))
