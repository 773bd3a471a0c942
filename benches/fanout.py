#!/usr/bin/env python3
"""Change-stream figures for `make bench` (benches/load.sh).

    fanout.py http1|h2 HOST:PORT COOKIE CSRF DOC_PATH SERVER_PID SUBSCRIBERS IDLE_STREAMS

`http1`: opens SUBSCRIBERS Server-Sent Events streams on DOC_PATH's change
feed, makes five writes (PATCH, If-Match: *) and measures, for every
subscriber, the time from sending each write to reading its `change` event;
then opens IDLE_STREAMS streams in all, one HTTP/1.1 connection each, and
reads the server's RSS before and after, for the memory one idle subscriber
costs. `h2`: IDLE_STREAMS streams over HTTP/2 (h2c, 32 per connection), RSS
before and after. Run each against a freshly started server: memory freed
by an earlier run is reused and would hide the cost. Prints tab-separated:

    fanout  SUBSCRIBERS  writes  received  p50_ms  p99_ms  max_ms
    idle_stream_kib  http/1.1|h2  STREAMS  rss_before_kib  rss_after_kib  per_stream_kib
"""

import asyncio
import json
import re
import selectors
import socket
import threading
import resource
import sys
import time
import urllib.request

import h2.config
import h2.connection
import h2.events

mode = sys.argv[1]
host, port = sys.argv[2].rsplit(":", 1)
cookie, csrf, doc, pid = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
subscribers, idle_streams = int(sys.argv[7]), int(sys.argv[8])
WRITES = 5


def rss_kib():
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


async def open_stream():
    """A connection with the stream's headers read and its first (reset) event."""
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    writer.write(
        f"GET {doc}/changes HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"stream refused: {head.decode(errors='replace')}")
    await reader.readuntil(b"event: reset\n")
    return reader, writer


def open_plain():
    """A plain socket past the stream's headers and reset event, non-blocking.
    The fan-out is read with one epoll loop: asyncio's per-line overhead
    would be measured instead of the server."""
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"GET {doc}/changes HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    data = b""
    while b"event: reset\n" not in data:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise SystemExit(f"stream refused: {data.decode(errors='replace')}")
        data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"stream refused: {data.decode(errors='replace')}")
    sock.setblocking(False)
    return sock


CHANGE = re.compile(rb"id: (\d+)\nevent: change")


def fanout():
    """Write-to-event latencies over `subscribers` streams; the sockets stay open."""
    socks = [open_plain() for _ in range(subscribers)]
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, index)
    seen = [{} for _ in socks]
    latencies, received = [], 0
    for n in range(WRITES):
        time.sleep(0.3)
        written = []
        sent = time.perf_counter()
        writer = threading.Thread(target=lambda: written.append(write({"done": n % 2 == 0})))
        writer.start()
        while time.perf_counter() < sent + 1.0:
            for key, _ in selector.select(timeout=0.05):
                data, now = key.fileobj.recv(1 << 16), time.perf_counter()
                for match in CHANGE.finditer(data):
                    seen[key.data].setdefault(int(match.group(1)), now)
        writer.join()
        for times in seen:
            if written[0] in times:
                received += 1
                latencies.append((times[written[0]] - sent) * 1000)
    selector.close()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    worst = latencies[-1] if latencies else float("nan")
    print(f"fanout\t{subscribers}\t{WRITES}\t{received}\t{pick(0.5):.2f}\t{pick(0.99):.2f}\t{worst:.2f}", flush=True)
    return socks


async def open_h2(streams):
    """One h2c connection carrying `streams` streams, each past its reset event."""
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":scheme", "http"), (":authority", f"{host}:{port}"),
               (":path", f"{doc}/changes"), ("accept", "text/event-stream"), ("cookie", cookie)]
    pending = set()
    for _ in range(streams):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers, end_stream=True)
        pending.add(stream)
    writer.write(conn.data_to_send())
    seen = {}
    while pending:
        data = await reader.read(1 << 16)
        if not data:
            raise SystemExit("h2 connection closed")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers).get(":status")
                if status != "200":
                    raise SystemExit(f"h2 stream refused: {status}")
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                seen[event.stream_id] = seen.get(event.stream_id, b"") + event.data
                if b"event: reset" in seen[event.stream_id]:
                    pending.discard(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                raise SystemExit(f"h2 stream reset: {event.error_code}")
        writer.write(conn.data_to_send())
    return writer


def write(body):
    request = urllib.request.Request(
        f"http://{host}:{port}{doc}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"content-type": "application/merge-patch+json", "if-match": "*", "cookie": cookie, "x-csrf-token": csrf},
    )
    with urllib.request.urlopen(request) as response:
        return int(response.headers["etag"].strip('"'))


async def idle_h2():
    before = rss_kib()
    connections = []
    # Four connections at a time: 128 requests, within the client's in-flight share.
    for _ in range(0, idle_streams // 32, 4):
        connections += await asyncio.gather(*(open_h2(32) for _ in range(4)))
    await asyncio.sleep(1.0)
    after = rss_kib()
    opened = 32 * len(connections)
    print(f"idle_stream_kib\th2\t{opened}\t{before}\t{after}\t{(after - before) / max(opened, 1):.1f}")
    for writer in connections:
        writer.close()


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if mode == "h2":
        return await idle_h2()
    plain = fanout()
    await asyncio.sleep(1.0)
    before = rss_kib()
    streams = []
    for batch in range(len(plain), idle_streams, 200):
        streams += await asyncio.gather(*(open_stream() for _ in range(min(200, idle_streams - batch))))
    await asyncio.sleep(1.0)
    after = rss_kib()
    added = idle_streams - subscribers
    print(f"idle_stream_kib\thttp/1.1\t{idle_streams}\t{before}\t{after}\t{(after - before) / max(added, 1):.1f}")
    for _, writer in streams:
        writer.close()
    for sock in plain:
        sock.close()


asyncio.run(main())
