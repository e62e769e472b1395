"""What is maximised: the mean of the filter's own channel, optionally before its ReLU."""

from collections.abc import Callable

from worker.engine.backend import Tensor
from worker.engine.network import Cut, activate, channel_means, pre_activation


def channel_mean(cut: Cut, *, pre_relu: bool) -> Callable:
    """losses(network_input, filters, relu) -> one loss per image: its filter's channel mean."""

    def losses(x: Tensor, filters: Tensor, relu: Callable) -> Tensor:
        activations = pre_activation(cut, x, relu)
        return channel_means(activations if pre_relu else activate(cut, activations, relu), filters)

    return losses
