"""Shared fixtures: one seeded-random VGG16 per test session (tests never need ImageNet weights)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

TEST_WEIGHTS = "random:3"


@pytest.fixture(scope="session")
def loaded_model():
    from worker.model import load_vgg16

    return load_vgg16(TEST_WEIGHTS)


@pytest.fixture(scope="session")
def engine(loaded_model):
    from worker.engine import AscentEngine

    return AscentEngine(loaded_model.network)
