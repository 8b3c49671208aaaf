"""One TCP connection between stdin/stdout and 127.0.0.1:PORT: qemu's user network runs it
for each guest connection to a guestfwd address (``guestfwd=tcp:IP:80-cmd:python3 relay.py
PORT``), so a guest reaches a server on a free host port at port 80 (GRUB 2.06 fetches over
HTTP from port 80 only)."""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main() -> None:
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    selector.unregister(0)
                    continue
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                while data:
                    data = data[os.write(1, data) :]


if __name__ == "__main__":
    main()
