"""A TCP listener on 127.0.0.1 for scripted peers in tests (a fake next hop, a milter
that hangs): the kernel picks the port (`port`), and each accepted connection goes to
`on_connection(sock)`, on a thread of its own (`threaded`, the default) or on the accept
thread. close() stops accepting; the connections are the handler's to close."""
import socket
import threading


class LoopbackServer:
    def __init__(self, on_connection, threaded=True, backlog=16):
        self.on_connection = on_connection
        self.threaded = threaded
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return  # closed
            if self.threaded:
                threading.Thread(target=self.on_connection, args=(c,), daemon=True).start()
            else:
                self.on_connection(c)

    def close(self):
        self.sock.close()
