"""The HTTP API: Flask only, never TensorFlow."""
