"""How an SSH connection reaches a local worker whose sandbox has no network of its own.

The worker's sandbox gets a network namespace with only a loopback interface, so nothing in
it can reach the machine's services (a Redis queue, PostgreSQL, the dashboard, other
workers' ports) over 127.0.0.1. Connections come in through a Unix socket instead:

    ssh client --TCP--> Relay (dashboard process, the worker's port)
               --Unix socket--> ACCEPTOR (in the sandbox) --> `sshd -i` per connection

The socket lives in a directory bound into the sandbox; the relay reaches it through
/proc/self/fd/<directory fd>/ so that a long data-directory path never exceeds the 108 bytes
a socket address may have.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

log = logging.getLogger(__name__)

SOCKET_NAME = "ssh.sock"
# Connections one worker's relay carries at once (sshd's own MaxStartups plays this role for a
# listening sshd; here every connection costs two threads in the dashboard and an `sshd -i`
# process counted against the sandbox user's process limit, shared by every run and worker).
MAX_CONNECTIONS = 16
READY_LINE = "worker acceptor ready"
# Plain Python run inside the sandbox: check the sshd configuration once, then start one
# `sshd -i` (inetd mode) per connection on the Unix socket, with the connection as its stdio.
ACCEPTOR = f'''import os, signal, socket, subprocess, sys

sock_path, sshd, config, log_path = sys.argv[1:5]
log = open(log_path, "ab", buffering=0)
check = subprocess.run([sshd, "-t", "-f", config], stderr=subprocess.STDOUT, stdout=log)
if check.returncode != 0:
    sys.exit(f"sshd refused its configuration (exit {{check.returncode}})")
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # sessions are reaped by the kernel
if os.path.exists(sock_path):
    os.unlink(sock_path)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sock_path)
server.listen(16)
print("{READY_LINE}", flush=True)
while True:
    conn, _ = server.accept()
    subprocess.Popen([sshd, "-i", "-e", "-f", config], stdin=conn, stdout=conn, stderr=log)
    conn.close()
'''


class Relay:
    """Accepts TCP connections on (host, port 0 -> chosen) and pipes each to the socket."""

    def __init__(self, host: str, socket_dir: Path, max_connections: int = MAX_CONNECTIONS) -> None:
        self.listener = socket.create_server((host, 0))
        self.max_connections = max_connections
        self._active = 0  # connections accepted and not yet finished
        self.port: int = self.listener.getsockname()[1]
        self._dir_fd = os.open(socket_dir, os.O_PATH | os.O_DIRECTORY)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name=f"ssh-relay-{self.port}", daemon=True
        )

    @property
    def target(self) -> str:
        return f"/proc/self/fd/{self._dir_fd}/{SOCKET_NAME}"

    def start(self) -> Relay:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                full = self._active >= self.max_connections
                if not full:
                    self._active += 1
            if full:  # refused at once: a flood of connections cannot exhaust anything
                log.warning(
                    "ssh relay %s: %d connections open; refusing another",
                    self.port,
                    self.max_connections,
                )
                client.close()
                continue
            threading.Thread(target=self._carry, args=(client,), daemon=True).start()

    def _carry(self, client: socket.socket) -> None:
        try:
            self._connect(client)
        finally:
            with self._lock:
                self._active -= 1

    def _connect(self, client: socket.socket) -> None:
        inside = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            inside.connect(self.target)
        except OSError as exc:
            log.warning("ssh relay %s: worker not reachable: %s", self.port, exc)
            client.close()
            inside.close()
            return
        with self._lock:
            if self._closed:
                client.close()
                inside.close()
                return
            self._connections.update((client, inside))
        back = threading.Thread(target=_pump, args=(inside, client), daemon=True)
        back.start()
        _pump(client, inside)
        back.join()
        with self._lock:
            self._connections.difference_update((client, inside))
        client.close()
        inside.close()

    def close(self) -> None:
        """Stop listening and cut every open connection."""
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            os.close(self._dir_fd)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end that direction on `sink`."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
