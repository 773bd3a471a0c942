#!/usr/bin/env python3
"""Media figures for `make bench` (benches/load.sh).

    media.py PLINTH_URL SERVER_PID COOKIE CSRF BARE_URL SIZE_MIB WORK_DIR

Makes a SIZE_MIB file (an MP4 header, then random bytes) in WORK_DIR, then:
- the ceiling: `curl -T` it to `bare-hyper WORK_DIR` (PUT /files/big) and
  `curl` it back, timed;
- plinth: a tus upload in 8 MiB PATCHes over one keep-alive connection,
  and a `curl` download of the item, timed, while the server's RSS is
  sampled every 10 ms (growth over its RSS just before);
- ranged reads of 64 KiB from the middle of the item at a fixed rate, with
  oha (the rate and duration from RANGE_RATE and SECONDS_PER_RUN).

Prints tab-separated lines:

    media_transfer  upload|download  bare|plinth  MiB  seconds  MiB/s  rss_growth_kib
    <scenario>  connections  req/s  p50_ms  p99_ms  failed   (the range figure, as load.sh prints)
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

plinth, pid, cookie, csrf, bare, size_mib, work = sys.argv[1:8]
size = int(size_mib) << 20
CHUNK = 8 << 20
tools = os.environ.get("PLINTH_BENCH_TOOLS", os.path.expanduser("~/.cache/plinth-bench-tools")) + "/bin"
rate = os.environ.get("RANGE_RATE", "500")
seconds = os.environ.get("SECONDS_PER_RUN", "5")
auth = {"cookie": cookie, "x-csrf-token": csrf}


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


class Sampler:
    """The server's highest RSS while a block runs, minus its RSS before."""

    def __enter__(self):
        self.before = self.peak = rss_kib()
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while self.running:
            self.peak = max(self.peak, rss_kib())
            time.sleep(0.01)

    def __exit__(self, *_):
        self.running = False
        self.thread.join()
        self.growth = max(0, self.peak - self.before)


def report(direction, who, elapsed, growth):
    mib = size / 2**20
    print(f"media_transfer\t{direction}\t{who}\t{mib:.0f}\t{elapsed:.2f}\t{mib / elapsed:.1f}\t{growth}", flush=True)


def timed(command):
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


path = os.path.join(work, "big")
with open(path, "wb") as f:
    f.write(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
    left = size - 24
    while left:
        n = min(left, 16 << 20)
        f.write(os.urandom(n))
        left -= n

# The ceiling: the same bytes through a bare hyper file server.
report("upload", "bare", timed(["curl", "-sf", "-T", path, f"{bare}/files/copy"]), 0)
report("download", "bare", timed(["curl", "-sf", "-o", "/dev/null", f"{bare}/files/copy"]), 0)
os.remove(os.path.join(work, "copy"))

# plinth: tus in 8 MiB PATCHes over one connection.
url = urllib.parse.urlsplit(plinth)
conn = http.client.HTTPConnection(url.hostname, url.port)
tus = {**auth, "tus-resumable": "1.0.0"}
conn.request("POST", "/v1/media/uploads?purpose=video", headers={**tus, "upload-length": str(size)})
created = conn.getresponse()
created.read()
assert created.status == 201, created.status
upload = created.getheader("location")
with Sampler() as sampler, open(path, "rb") as f:
    started = time.monotonic()
    offset = 0
    while offset < size:
        chunk = f.read(CHUNK)
        headers = {**tus, "upload-offset": str(offset), "content-type": "application/offset+octet-stream"}
        conn.request("PATCH", upload, body=chunk, headers=headers)
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 204, (answer.status, offset)
        offset += len(chunk)
    elapsed = time.monotonic() - started
item = answer.getheader("content-location")
report("upload", "plinth", elapsed, sampler.growth)

with Sampler() as sampler:
    elapsed = timed(["curl", "-sf", "-o", "/dev/null", "-H", f"cookie: {cookie}", f"{plinth}{item}"])
report("download", "plinth", elapsed, sampler.growth)

# 64 KiB from the middle, at a fixed offered rate.
first = size // 2
ranged = subprocess.run(
    [f"{tools}/oha", "-z", f"{seconds}s", "-c", "8", "-q", rate, "--latency-correction", "--no-tui",
     "--output-format", "json", "-H", f"cookie: {cookie}", "-H", f"range: bytes={first}-{first + 65535}",
     f"{plinth}{item}"],
    check=True, capture_output=True, text=True).stdout
r = json.loads(ranged)
bad = sum(n for code, n in r.get("statusCodeDistribution", {}).items() if code != "206")
errors = sum(n for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
pct = r["latencyPercentiles"]
print(f"plinth GET /v1/media/{{id}} 64 KiB range of {size_mib} MiB at {rate} req/s offered\t8\t"
      f"{r['summary']['requestsPerSec']:.2f}\t{pct['p50'] * 1000:.3f}\t{pct['p99'] * 1000:.3f}\t{bad + errors}")
os.remove(path)
