"""Slowloris from one address against the real gateway: 1,050 connections from 127.0.0.1, each
trickling header bytes (more than the gateway's 1,000 connections in all). The connections
one address may hold are capped well below that, so another address (127.0.0.2) still gets
/healthz and a sign-in answered within a second."""
import http.client
import json
import socket
import threading

import pytest

from admin_gateway.hosting import CONNECTIONS_PER_ADDRESS
from tests.security.stack import Deployment

ATTACKING = 1050
DEADLINE_S = 1.0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    running = Deployment(tmp_path_factory.mktemp("slowloris"), RATE_LIMIT_ADMIN="off").start()
    yield running
    running.stop()


def other_address_call(deployment, method, path, body=None):
    host, port = deployment.env["ADMIN_HTTP_ADDR"].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE_S,
                                            source_address=("127.0.0.2", 0))
    try:
        connection.request(method, path, body=json.dumps(body) if body else None,
                           headers={"Content-Type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_one_address_cannot_take_every_connection(deployment):
    host, port = deployment.env["ADMIN_HTTP_ADDR"].split(":")
    sockets, stop = [], threading.Event()
    for _ in range(ATTACKING):
        client = socket.create_connection((host, int(port)), timeout=5)
        client.sendall(b"GET /healthz HTTP/1.1\r\n")
        sockets.append(client)

    def trickle():
        while not stop.wait(1.0):
            for client in list(sockets):
                try:
                    client.sendall(b"X")
                except OSError:
                    sockets.remove(client)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        for _ in range(5):
            assert other_address_call(deployment, "GET", "/healthz") == 200
            assert other_address_call(deployment, "POST", "/auth/login",
                                      {"email": "someone@example.com",
                                       "password": "not-the-password"}) == 401
        # The address's connections beyond its cap were closed by the server.
        stop.set()
        feeder.join(10)
        alive = 0
        for client in sockets:
            client.settimeout(0)
            try:
                alive += client.recv(1) != b""
            except BlockingIOError:
                alive += 1  # open, nothing to read
            except OSError:
                pass
        assert alive <= CONNECTIONS_PER_ADDRESS
    finally:
        stop.set()
        for client in sockets:
            client.close()
