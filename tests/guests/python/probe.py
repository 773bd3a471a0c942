"""What a Python plugin can reach: `GET /sandbox?HOST:PORT` reports its
environment, arguments, files and whether it can connect to HOST:PORT;
`GET /throw` raises."""

import os
import socket
import sys

from wit_world import exports
from wit_world.imports.types import Request, Response


def attempt(call) -> bool:
    try:
        call()
        return True
    except Exception:
        return False


def create_file():
    with open("probe.txt", "w") as f:
        f.write("escaped")


def connect(address: str):
    host, port = address.rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=1).close()


class Handler(exports.Handler):
    def routes(self) -> list[str]:
        return ["GET /sandbox", "GET /throw"]

    def handle(self, req: Request) -> Response:
        if req.route() == "GET /throw":
            raise RuntimeError("the probe was asked to raise")
        address = req.query() or "127.0.0.1:9"
        report = [
            f"env={len(os.environ)}",
            f"args={len(sys.argv)}",
            f"read_root={attempt(lambda: os.listdir('/'))}",
            f"create_file={attempt(create_file)}",
            f"tcp_connect={attempt(lambda: connect(address))}",
        ]
        response = Response(200)
        response.set_body(("\n".join(report) + "\n").encode())
        return response
