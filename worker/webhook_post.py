"""One webhook POST with a deadline: to the address that was checked, reading the status line and
headers only, all of it over within `deadline` seconds whatever the receiver does.

Socket timeouts alone don't bound a delivery: each recv gets the whole timeout, so a receiver that
sends a byte every few seconds (or streams a body forever) holds the thread as long as it likes. A
watchdog shuts the socket down at the deadline instead, and the body is never read.
"""

import socket
import threading
from contextlib import suppress
from http.client import HTTPException

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from shared.webhooks import Destination


class DeliveryFailed(Exception):
    """The attempt got no status: no connection, a broken answer, or the deadline."""


def _connection(destination: Destination, deadline: float) -> HTTPConnection:
    address = destination.addresses[0]
    if destination.scheme == "https":
        # Connect to the address, verify the certificate for the host name.
        return HTTPSConnection(
            address, destination.port, timeout=deadline, server_hostname=destination.host,
            assert_hostname=destination.host, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
        )  # fmt: skip
    return HTTPConnection(address, destination.port, timeout=deadline)


def post(destination: Destination, body: str, headers: dict[str, str], deadline: float) -> int:
    """POST to the destination's first checked address (never a fresh lookup); the status code, or
    DeliveryFailed."""
    connection = _connection(destination, deadline)
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            with suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)  # the blocked send or recv returns at once

    watchdog = threading.Timer(deadline, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        if expired.is_set():  # the deadline passed while connecting
            raise DeliveryFailed(f"no answer within {deadline:g} s")
        headers = {**headers, "Host": destination.host_header, "Connection": "close"}
        connection.request("POST", destination.target, body=body.encode(), headers=headers, preload_content=False)
        return connection.getresponse().status
    except (OSError, HTTPException, urllib3.exceptions.HTTPError) as error:
        reason = f"no answer within {deadline:g} s" if expired.is_set() else type(error).__name__
        raise DeliveryFailed(reason) from None
    finally:
        watchdog.cancel()
        connection.close()
