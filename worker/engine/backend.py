"""Which Keras backend the engine runs on, chosen once per process, and its backend-specific module.

Keras reads KERAS_BACKEND once, when it is first imported, so the choice is made here, on the
import of `worker.engine` (its package __init__ calls `select_backend` before anything imports
keras): FILTERVIZ_BACKEND, else KERAS_BACKEND, else TensorFlow. Everything backend-specific (the
compiled gradient steps, the redirected ReLU, random draws, the inverse FFT) sits in one module
per backend with the same functions: `tf_step` and `jax_step`.
"""

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from shared.environment import ConfigurationError
from shared.setting_groups import BackendSettings

# A tensor of the backend Keras runs on (tf.Tensor, jax.Array, a keras.Variable): Keras ships no
# types, so to the type checker it is Any.
Tensor = Any

TENSORFLOW = "tensorflow"
JAX = "jax"
BACKENDS = (TENSORFLOW, JAX)
STEP_MODULES = {TENSORFLOW: "worker.engine.tf_step", JAX: "worker.engine.jax_step"}
# Added to a gradient's RMS before dividing by it, by both step modules and the optimizers.
GRADIENT_EPSILON = 1e-7  # keras.backend.epsilon(), as the seed uses


class BackendError(RuntimeError):
    """The backend asked for is unknown, or keras was already imported with another one."""


def requested_backend() -> str:
    """The backend the environment asks for: FILTERVIZ_BACKEND, else KERAS_BACKEND, else TensorFlow."""
    try:
        return BackendSettings.from_environment().backend  # not Settings: one variable, before keras is imported
    except ConfigurationError as error:
        raise BackendError(f"backend not supported: {error}") from None


def select_backend() -> str:
    """Point Keras at the requested backend; must run before keras is first imported in the process."""
    name = requested_backend()
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise BackendError(
                f"keras was imported with backend {keras.backend.backend()!r} before {name!r} was chosen: "
                "import worker.engine first"
            )
    os.environ["KERAS_BACKEND"] = name
    if name == JAX:
        # JAX takes 75% of a GPU's memory when it starts: allocating as needed lets several worker
        # processes share one card (TensorFlow's memory growth, worker/device.py, is the same idea).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return name


def step_module() -> ModuleType:
    """The backend-specific module of the backend Keras runs on."""
    import keras

    return importlib.import_module(STEP_MODULES[keras.backend.backend()])


def __getattr__(name: str) -> ModuleType:
    # `from worker.engine.backend import active`: the step module, looked up once keras is imported.
    if name == "active":
        return step_module()
    raise AttributeError(name)
