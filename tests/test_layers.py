"""The static layer table the API serves agrees with Keras' VGG16."""

import keras

from shared.layers import conv_layers


def test_layer_table_matches_keras_vgg16():
    network = keras.applications.VGG16(include_top=False, weights=None)
    from_keras = [(layer.name, layer.filters) for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(layer.name, layer.filters) for layer in conv_layers()] == from_keras


def test_downsampling_matches_keras_output_shapes():
    network = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    for layer in conv_layers():
        assert network.get_layer(layer.name).output.shape[1] == 64 // layer.downsampling
