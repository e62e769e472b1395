"""The whole service on localhost from pip-installed parts, for `make up` and for the tests."""
