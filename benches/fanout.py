#!/usr/bin/env python3
"""Change-stream figures for `make bench` (benches/load.sh).

    fanout.py HOST:PORT COOKIE CSRF DOC_PATH SERVER_PID SUBSCRIBERS IDLE_STREAMS

Opens SUBSCRIBERS Server-Sent Events streams on DOC_PATH's change feed,
makes five writes (PATCH, If-Match: *) and measures, for every subscriber,
the time from sending each write to reading its `change` event. Then opens
IDLE_STREAMS streams in all and reads the server's RSS before and after, for
the memory one idle subscriber costs. Prints tab-separated lines:

    fanout  SUBSCRIBERS  writes  received  p50_ms  p99_ms  max_ms
    idle_stream_kib  IDLE_STREAMS  rss_before_kib  rss_after_kib  per_stream_kib
"""

import asyncio
import json
import resource
import sys
import time
import urllib.request

host, port = sys.argv[1].rsplit(":", 1)
cookie, csrf, doc, pid = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
subscribers, idle_streams = int(sys.argv[6]), int(sys.argv[7])
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


async def watch(reader, seen):
    """Records when each change event arrives, by its id."""
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"id: "):
            current = int(line[4:])
        elif line == b"event: change\n":
            seen.setdefault(current, time.perf_counter())


def write(body):
    request = urllib.request.Request(
        f"http://{host}:{port}{doc}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"content-type": "application/merge-patch+json", "if-match": "*", "cookie": cookie, "x-csrf-token": csrf},
    )
    with urllib.request.urlopen(request) as response:
        return int(response.headers["etag"].strip('"'))


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    streams = []
    for batch in range(0, subscribers, 100):
        streams += await asyncio.gather(*(open_stream() for _ in range(min(100, subscribers - batch))))
    seens = [{} for _ in streams]
    watchers = [asyncio.create_task(watch(r, s)) for (r, _), s in zip(streams, seens)]
    latencies, received = [], 0
    for n in range(WRITES):
        await asyncio.sleep(0.3)
        sent = time.perf_counter()
        version = await asyncio.to_thread(write, {"done": n % 2 == 0})
        await asyncio.sleep(1.0)
        for seen in seens:
            if version in seen:
                received += 1
                latencies.append((seen[version] - sent) * 1000)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    print(f"fanout\t{subscribers}\t{WRITES}\t{received}\t{pick(0.5):.2f}\t{pick(0.99):.2f}\t{latencies[-1] if latencies else float('nan'):.2f}")
    for task in watchers:
        task.cancel()
    await asyncio.sleep(1.0)
    before = rss_kib()
    for batch in range(len(streams), idle_streams, 200):
        streams += await asyncio.gather(*(open_stream() for _ in range(min(200, idle_streams - batch))))
    await asyncio.sleep(1.0)
    after = rss_kib()
    added = idle_streams - subscribers
    print(f"idle_stream_kib\t{idle_streams}\t{before}\t{after}\t{(after - before) / max(added, 1):.1f}")
    for _, writer in streams:
        writer.close()


asyncio.run(main())
