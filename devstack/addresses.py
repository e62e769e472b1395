"""HTTP sessions that connect from a chosen loopback address: the API tells clients apart by address,
so a test or a benchmark plays several clients from one process (127.0.0.1, 127.0.0.2, ...)."""

import requests
from requests.adapters import HTTPAdapter


class FromAddress(HTTPAdapter):
    """Connects from a given loopback address (one client per address)."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._address, 0)
        return super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    """A session whose connections come from `address`."""
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session
