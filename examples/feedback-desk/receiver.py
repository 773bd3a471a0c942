"""The feedback desk's webhook receiver, for trying it out: verifies each
delivery with the Standard Webhooks library (`pip install
standardwebhooks`) and prints its event.

    python3 receiver.py PORT SECRET
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook

port, secret = int(sys.argv[1]), sys.argv[2]
webhook = Webhook(secret)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = webhook.verify(body, {k.lower(): v for k, v in self.headers.items()})
        except Exception as e:
            print("refused a delivery:", e, flush=True)
            self.send_response(400)
        else:
            data = event["data"]
            print(f"verified {event['type']}: {data['id']} ({data['data']['topic']})", flush=True)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
