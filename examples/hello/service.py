"""The hello bundle's one service: a tiny HTTP server on the bottle's alias only."""

import http.server
import os

GREETING = b"hello from your bundle\n"


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(GREETING)))
        self.end_headers()
        self.wfile.write(GREETING)

    def log_message(self, format, *args):
        pass


# The alias and port come from the runtime; binding the alias (never 0.0.0.0 or
# 127.0.0.1) is what keeps the service out of other bottles' reach.
address = (os.environ["BOTTLE_ALIAS"], int(os.environ["PORT"]))
http.server.ThreadingHTTPServer(address, Hello).serve_forever()
