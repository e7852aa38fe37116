"""The SSH relay of local workers against a connection flood: beyond its limit a connection
is closed at once, and the connections it carries keep working (no sandbox needed: the relay
only pipes TCP to the worker's Unix socket)."""

from __future__ import annotations

import socket
import threading

from dashboard.workers.ssh_relay import SOCKET_NAME, Relay


def echo_server(path: str) -> socket.socket:
    """A Unix-socket server that echoes every connection until it ends (the worker's side)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def roundtrip(conn: socket.socket, payload: bytes) -> bytes:
    conn.sendall(payload)
    return conn.recv(4096)


def test_a_connection_flood_is_refused_beyond_the_limit(tmp_path):
    server = echo_server(str(tmp_path / SOCKET_NAME))
    relay = Relay("127.0.0.1", tmp_path, max_connections=3).start()
    carried = [socket.create_connection(("127.0.0.1", relay.port), timeout=10) for _ in range(3)]
    try:
        for i, conn in enumerate(carried):  # each is piped through before the next one opens
            assert roundtrip(conn, b"hello %d" % i) == b"hello %d" % i
        extra = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        with extra:
            assert extra.recv(4096) == b""  # closed by the relay, never piped
        assert roundtrip(carried[0], b"still") == b"still"
        carried.pop().close()  # a slot frees when a connection ends
        for _ in range(100):
            again = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
            try:
                again.sendall(b"back")
                answer = again.recv(4096)
            except ConnectionResetError:  # refused while it still counted the freed slot
                answer = b""
            if answer:
                break
            again.close()  # the relay had not yet seen the freed slot: try again
        assert answer == b"back"
        again.close()
    finally:
        for conn in carried:
            conn.close()
        relay.close()
        server.close()
