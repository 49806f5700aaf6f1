#!/usr/bin/env python3
"""A recording TCP relay for seed capture: listens on LISTEN_PORT, forwards each connection to
127.0.0.1:SERVER_PORT, and writes what each side sent to OUT_PREFIX-N.client / OUT_PREFIX-N.server
(N counts connections). Stops after MAX_CONNECTIONS connections (default: never).

    record-relay.py LISTEN_PORT SERVER_PORT OUT_PREFIX [MAX_CONNECTIONS]
"""
import socket
import sys
import threading

listen_port, server_port, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
limit = int(sys.argv[4]) if len(sys.argv) > 4 else None


def pump(source, destination, record):
    with open(record, "wb") as out:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            out.write(data)
            out.flush()
            try:
                destination.sendall(data)
            except OSError:
                break
    try:
        destination.shutdown(socket.SHUT_WR)
    except OSError:
        pass


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(8)
count = 0
threads = []
while limit is None or count < limit:
    client, _ = listener.accept()
    count += 1
    server = socket.create_connection(("127.0.0.1", server_port))
    for args in ((client, server, f"{prefix}-{count}.client"), (server, client, f"{prefix}-{count}.server")):
        thread = threading.Thread(target=pump, args=args)
        thread.start()
        threads.append(thread)
for thread in threads:
    thread.join()
