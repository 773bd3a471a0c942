"""A webhook receiver for the integration tests: verifies every delivery
with the Standard Webhooks reference library and appends one JSON line per
request to OUT: {"verified": bool, "id": ..., "body": ...}.

    python3 webhook_receiver.py PORT SECRET OUT FAILURES

answers the first FAILURES requests with 500 (a negative number: every
request), then 204 to deliveries that verify and 400 to those that do not.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook

port, secret, out, failures = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
webhook = Webhook(secret)
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        seen += 1
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            webhook.verify(body, {k.lower(): v for k, v in self.headers.items()})
            verified = True
        except Exception:
            verified = False
        failing = failures < 0 or seen <= failures
        with open(out, "a") as f:
            f.write(json.dumps({"verified": verified, "id": self.headers.get("webhook-id"),
                                "answered": 500 if failing else (204 if verified else 400),
                                "body": body.decode()}) + "\n")
        self.send_response(500 if failing else (204 if verified else 400))
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
