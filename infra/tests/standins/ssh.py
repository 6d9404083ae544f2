"""A stand-in `ssh` for infra/tests/cloud_rollout.rs: does what `ssh -N -L LOCAL:127.0.0.1:PORT
user@HOST` does for the gate, forwarding 127.0.0.1:LOCAL to HOST:STANDIN_APP_PORT (the test's
droplets listen on their own loopback address), and logs its arguments."""

import os
import socket
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, host, port):
    try:
        upstream = socket.create_connection((host, port), timeout=5)
    except OSError:
        # What ssh does when the far end refuses: the channel closes.
        client.close()
        return
    upstream.settimeout(None)
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    pipe(upstream, client)


def main(argv):
    with open(os.path.join(os.environ["STANDIN_DIR"], "ssh.log"), "a") as log:
        log.write(" ".join(argv) + "\n")
    forward = argv[argv.index("-L") + 1]
    target = argv[-1]
    bind, local, _, _ = forward.split(":")
    host = target.split("@", 1)[1]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, int(local)))
    listener.listen(64)
    port = int(os.environ["STANDIN_APP_PORT"])
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, host, port), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
