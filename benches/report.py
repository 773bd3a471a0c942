"""Renders one `make bench` run as Markdown and writes it into BENCHMARKS.md.

Inputs: the tab-separated lines of benches/load.sh, the criterion results of
this run (estimates written after `started`), and facts about the run. The
text between the markers in BENCHMARKS.md is replaced; the rest (analysis,
history) is kept.

usage: report.py LOAD_TSV CRITERION_DIR STARTED_EPOCH BENCHMARKS_MD COMMAND
"""

import datetime
import json
import os
import platform
import subprocess
import sys

BEGIN = "<!-- make bench: generated from here -->"
END = "<!-- make bench: generated up to here -->"

# Budget (DESIGN.md, "Performance budget").
PLUGIN_CALL_US = 10.0
HELLO_VS_BARE = 0.5
HELLO_VS_SERVE = 1.0
PATCH_P50_MS, PATCH_P99_MS = 1.0, 5.0
HEALTHZ_FLOOD_FACTOR = 2.0
UNDER_ATTACK_P99_MS = 100.0
STARTUP_WARM_MS = 200
FANOUT_P99_MS = 50.0
IDLE_STREAM_KIB = 16.0
TOKEN_US = 10.0
MEDIA_VS_BARE = 0.5
MEDIA_RSS_KIB = 32 * 1024
RANGE_P99_MS = 2.0
THUMBNAIL_P50_MS = 100.0
FORM_P50_MS, FORM_P99_MS = 1.0, 5.0
PAGE_P50_MS = 2.0
# A feature slice's main page and main API call at 100 req/s (issue 15).
SLICE_P50_MS = 5.0
EXPORT_RSS_KIB = 64 * 1024
# Issue 16: a backup of 1 GiB pauses writers at most this long.
BACKUP_PAUSE_MS = 50.0
THUMBNAIL_MIB = 64

PLUGIN_CALL = "plugin/hello GET (instantiate + call + drop)"
TOKEN = "signing/sign + verify (view-sized payload)"


def criterion_medians(root, started):
    """{benchmark id: median ns} for the benchmarks this run measured."""
    medians = {}
    for dirpath, _, files in os.walk(root):
        if not dirpath.endswith(os.sep + "new") or "estimates.json" not in files:
            continue
        estimates = os.path.join(dirpath, "estimates.json")
        if os.path.getmtime(estimates) < started:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            name = json.load(f)["full_id"]
        with open(estimates) as f:
            medians[name] = json.load(f)["median"]["point_estimate"]
    return medians


def load_figures(path):
    rows, rss, startups, streams = [], None, [], {}
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == "fanout":
                subscribers, writes, received, p50, p99, worst = fields[1:]
                streams["fanout"] = (int(subscribers), int(writes), int(received), float(p50), float(p99), float(worst))
            elif fields[0] == "idle_stream_kib":
                protocol, count, before, after, per = fields[1:]
                streams[f"idle {protocol}"] = (int(count), int(before), int(after), float(per))
            elif fields[0] == "media_transfer":
                direction, who, mib, secs, rate, growth = fields[1:]
                streams[f"media {direction} {who}"] = (int(mib), float(secs), float(rate), int(growth))
            elif fields[0] == "thumbnail":
                mib, runs, p50, p90, worst, peak, total = fields[1:]
                streams["thumbnail"] = (float(mib), int(runs), float(p50), float(p90), float(worst), float(peak),
                                        float(total))
            elif fields[0] == "export":
                rows_, secs, rate, mib, peak, growth = fields[1:]
                streams["export"] = (int(rows_), float(secs), float(rate), float(mib), float(peak), int(growth))
            elif fields[0] == "backup":
                mib, secs, rate, pause, slowest, writes, verify = fields[1:]
                streams["backup"] = (int(mib), float(secs), float(rate), float(pause), float(slowest), int(writes),
                                     float(verify))
            elif fields[0] == "migration":
                records, backup, convert, rate, per = fields[1:]
                streams["migration"] = (int(records), float(backup), float(convert), float(rate), float(per))
            elif fields[0] == "backfill":
                rate, records, secs, per_s, idle50, idle99, p50, p99, failed = fields[1:]
                streams.setdefault("backfill", []).append(
                    (int(rate), int(records), float(secs), float(per_s), float(idle50), float(idle99), float(p50),
                     float(p99), int(failed)))
            elif fields[0] == "inbox_paint":
                submissions, loads, fcp, rows_p50, rows_max = fields[1:]
                streams["inbox_paint"] = (int(submissions), int(loads), float(fcp), float(rows_p50), float(rows_max))
            elif fields[0] == "peak_rss_kib":
                rss = int(fields[1])
            elif fields[0] == "startup_ms":
                startups.append((fields[1], int(fields[2])))
            elif len(fields) == 6:
                name, conns, rps, p50, p99, bad = fields
                rows.append((name, int(conns), float(rps), float(p50), float(p99), int(bad)))
    return rows, rss, startups, streams


def duration(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return f"{cpu}, {os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB, Linux {platform.release()}"


def commit():
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    return rev + (" with uncommitted changes" if dirty else "")


def verdict(ok):
    return "met" if ok else "**missed**"


def render(medians, rows, rss, startups, streams, command):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [BEGIN, "", "## Latest run", ""]
    out += [f"- When: {now}; commit {commit()}", f"- Machine: {machine()}", f"- Command: `{command}`", ""]

    out += ["### In-process (criterion, median)", "", "| benchmark | median |", "|---|---:|"]
    out += [f"| {name} | {duration(ns)} |" for name, ns in sorted(medians.items())]

    out += ["", "### Over HTTP (loopback; the load generator shares the cores)", ""]
    out += ["| scenario | connections | req/s | p50 ms | p99 ms | failed or non-2xx |", "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {n} | {c} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {bad} |" for n, c, rps, p50, p99, bad in rows]
    if rss is not None:
        out += ["", f"Peak RSS of the plinth server over the run: {rss / 1024:.0f} MiB."]
    if streams:
        out += ["", "### Change streams (state plugin, one 2 KiB document)", ""]
    if "fanout" in streams:
        subscribers, writes, received, p50, p99, worst = streams["fanout"]
        out += [f"- {writes} writes, each fanned out to {subscribers} open SSE subscribers: {received} of "
                f"{subscribers * writes} deliveries seen; write-to-event p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"max {worst:.1f} ms."]
    for protocol, how in (("http/1.1", "one HTTP/1.1 connection each"), ("h2", "HTTP/2, 32 per connection")):
        if f"idle {protocol}" in streams:
            count, before, after, per = streams[f"idle {protocol}"]
            out += [f"- {count} open idle streams, {how}, on a freshly started server: RSS "
                    f"{before / 1024:.0f} → {after / 1024:.0f} MiB, {per:.1f} KiB per added stream."]
    transfers = [(k.split()[1], k.split()[2], v) for k, v in streams.items() if k.startswith("media ")]
    if transfers:
        out += ["", "### Media (one file, loopback; bare hyper serving files is the ceiling)", "",
                "| direction | server | MiB | seconds | MiB/s | server RSS growth |", "|---|---|---:|---:|---:|---:|"]
        out += [f"| {d} | {w} | {mib} | {secs:.2f} | {rate:,.0f} | {growth / 1024:.1f} MiB |"
                for d, w, (mib, secs, rate, growth) in transfers]
    if "thumbnail" in streams:
        mib, runs, p50, p90, worst, peak, total = streams["thumbnail"]
        out += ["", "### Image variants (the `images` worker, 64 MiB, through the job queue)", "",
                f"- A 320 px thumbnail of a 12-megapixel JPEG ({mib:.1f} MiB), {runs} runs: in the worker p50 "
                f"{p50:.1f} ms, p90 {p90:.1f} ms, slowest {worst:.1f} ms; instance memory peak {peak:.1f} MiB; "
                f"submit to done p50 {total:.1f} ms."]
    if "export" in streams:
        rows_, secs, rate, mib, peak, growth = streams["export"]
        out += ["", "### Form exports (the `exports` worker, 32 MiB, through the job queue)", "",
                f"- {rows_:,} submissions as CSV ({mib:.1f} MiB) in {secs:.2f} s: {rate:,.0f} rows/s; worker "
                f"instance peak {peak:.1f} MiB; server RSS growth {growth / 1024:.1f} MiB."]
    if "backup" in streams:
        mib, secs, rate, pause, slowest, writes, verify = streams["backup"]
        out += ["", "### Backups (sled and blob files on disk, four writers writing meanwhile)", "",
                f"- {mib:,} MiB (256 MiB of 1 KiB records, the rest blob files) in {secs:.2f} s: {rate:,.0f} MiB/s; "
                f"writers held {pause:.3f} ms for the cut; the slowest of {writes:,} writes during the backup "
                f"{slowest:.2f} ms; verifying the file {verify:.2f} s."]
    if "migration" in streams:
        records, backup, convert, rate, per = streams["migration"]
        out += ["", "### Data migrations (`plinth migrate apply`, server stopped)", "",
                f"- One step over {records:,} small records (a word count added to each note): backup first "
                f"{backup:.2f} s, then {convert:.2f} s converting ({rate:,.0f} records/s; {per:.1f} µs a record, each "
                f"in a fresh instance of the plugin's component) into the next version's namespace."]
    for rate, records, secs, per_s, idle50, idle99, p50, p99, failed in streams.get("backfill", []):
        if rate == streams["backfill"][0][0]:
            out += ["", "### Migrating while serving (a window beside a 20% canary)", ""]
        paced = f"`storage.backfill_rate = {rate}`" if rate else "unpaced (`backfill_rate = 0`)"
        out.append(f"- Backfill of {records:,} small records, {paced}: {secs:.1f} s ({per_s:,.0f} records/s). "
                   f"Two clients reading and writing at 100 req/s each: p50 / p99 {idle50:.2f} / {idle99:.2f} ms "
                   f"idle, {p50:.2f} / {p99:.2f} ms during; {failed} failed.")
    if "inbox_paint" in streams:
        submissions, loads, fcp, rows_p50, rows_max = streams["inbox_paint"]
        out += ["", "### Feedback desk inbox in headless Chromium", "",
                f"- {submissions:,} submissions stored, {loads} loads of `/desk` signed in: first contentful paint "
                f"p50 {fcp:.1f} ms; the first 25 rows' frame (after the forms and state API calls) p50 "
                f"{rows_p50:.1f} ms, slowest {rows_max:.1f} ms."]
    if startups:
        out += ["", "### Start-up (exec to `listening on`, examples/plinth.toml)", "", "| compiled cache | ms |", "|---|---:|"]
        out += [f"| {cache} | {ms} |" for cache, ms in startups]

    out += ["", "### Against the budget", "", "| target | measured | |", "|---|---|---|"]
    out += budget(medians, rows, startups, streams)
    out += ["", END]
    return "\n".join(out) + "\n"


def budget(medians, rows, startups, streams):
    """One table row per budget line the run has figures for."""
    by = {(name, conns): (rps, p50, p99, bad) for name, conns, rps, p50, p99, bad in rows}

    def find(prefix, conns):
        return next((v for (name, c), v in by.items() if name.startswith(prefix) and c == conns), None)

    out = []
    call = medians.get(PLUGIN_CALL)
    if call is not None:
        out.append(
            f"| plugin call ≤ {PLUGIN_CALL_US:.0f} µs | {duration(call)} | {verdict(call <= PLUGIN_CALL_US * 1e3)} |"
        )
    for ceiling, factor in (("bare hyper hello", HELLO_VS_BARE), ("wasmtime serve hello (defaults)", HELLO_VS_SERVE),
                            ("wasmtime serve hello (tuned)", HELLO_VS_SERVE)):
        for conns in (1, 32, 128):
            ours, theirs = find("plinth GET /v1/hello", conns), find(ceiling, conns)
            if ours and theirs:
                ratio = ours[0] / theirs[0]
                out.append(f"| hello ≥ {factor}× {ceiling}, {conns} conn. | {ratio:.2f}× | {verdict(ratio >= factor)} |")
    token = medians.get(TOKEN)
    if token is not None:
        out.append(f"| token sign + verify ≤ {TOKEN_US:.0f} µs | {duration(token)} | {verdict(token <= TOKEN_US * 1e3)} |")
    for prefix in ("plinth PATCH /v1/me at", "plinth PATCH /v1/me, closed loop", "plinth PATCH /v1/state"):
        patch = find(prefix, 32)
        if patch:
            _, p50, p99, _ = patch
            ok = p50 <= PATCH_P50_MS and p99 <= PATCH_P99_MS
            label = prefix.removeprefix("plinth ").replace(" at", ", fixed rate")
            out.append(f"| {label}: p50 ≤ {PATCH_P50_MS:g} ms, p99 ≤ {PATCH_P99_MS:g} ms, 32 conn. "
                       f"| p50 {p50:.2f} ms, p99 {p99:.2f} ms | {verdict(ok)} |")
    alone, flood = find("plinth GET /healthz sampled, alone", 1), find("plinth GET /healthz sampled, during", 1)
    if alone and flood:
        factor = flood[2] / alone[2]
        out.append(f"| /healthz p99 during a login flood ≤ {HEALTHZ_FLOOD_FACTOR:g}× alone "
                   f"| {flood[2]:.2f} ms vs {alone[2]:.2f} ms ({factor:.1f}×) "
                   f"| {verdict(factor <= HEALTHZ_FLOOD_FACTOR)} |")
    for (name, conns), (_, _, p99, bad) in sorted(by.items()):
        if "another address attacking" in name:
            label = name.removeprefix("plinth ").replace(" sampled,", ",")
            out.append(f"| {label}: every answer 2xx, p99 ≤ {UNDER_ATTACK_P99_MS:g} ms | p99 {p99:.2f} ms, "
                       f"{bad} failed or non-2xx | {verdict(p99 <= UNDER_ATTACK_P99_MS and bad == 0)} |")
    if "fanout" in streams:
        subscribers, writes, received, _, p99, _ = streams["fanout"]
        ok = p99 <= FANOUT_P99_MS and received == subscribers * writes
        out.append(f"| one write to {subscribers} subscribers: every one within {FANOUT_P99_MS:g} ms (p99) "
                   f"| p99 {p99:.1f} ms, {received}/{subscribers * writes} delivered | {verdict(ok)} |")
    for protocol in ("h2", "http/1.1"):
        if f"idle {protocol}" in streams:
            count, _, _, per = streams[f"idle {protocol}"]
            out.append(f"| memory per idle stream ≤ {IDLE_STREAM_KIB:g} KiB, {protocol} "
                       f"| {per:.1f} KiB ({count} streams) | {verdict(per <= IDLE_STREAM_KIB)} |")
    for direction in ("upload", "download"):
        ours, theirs = streams.get(f"media {direction} plinth"), streams.get(f"media {direction} bare")
        if ours and theirs:
            ratio = ours[2] / theirs[2]
            out.append(f"| {direction} of {ours[0]} MiB ≥ {MEDIA_VS_BARE}× curl with bare hyper | {ours[2]:,.0f} vs "
                       f"{theirs[2]:,.0f} MiB/s ({ratio:.2f}×) | {verdict(ratio >= MEDIA_VS_BARE)} |")
            out.append(f"| server RSS growth during the {direction} ≤ {MEDIA_RSS_KIB // 1024} MiB "
                       f"| {ours[3] / 1024:.1f} MiB | {verdict(ours[3] <= MEDIA_RSS_KIB)} |")
    ranged = next(((n, v) for (n, c), v in by.items() if "64 KiB range" in n), None)
    if ranged:
        name, (_, _, p99, bad) = ranged
        out.append(f"| 64 KiB ranges from the middle of a large file: p99 ≤ {RANGE_P99_MS:g} ms "
                   f"| p99 {p99:.2f} ms, {bad} failed or not 206 | {verdict(p99 <= RANGE_P99_MS and bad == 0)} |")
    if "thumbnail" in streams:
        _, _, p50, _, _, peak, _ = streams["thumbnail"]
        ok = p50 <= THUMBNAIL_P50_MS and peak <= THUMBNAIL_MIB
        out.append(f"| 320 px thumbnail of a 12 MP JPEG in the worker: p50 ≤ {THUMBNAIL_P50_MS:g} ms within "
                   f"{THUMBNAIL_MIB} MiB | p50 {p50:.1f} ms, peak {peak:.1f} MiB | {verdict(ok)} |")
    validate = next((v for (n, c), v in by.items() if n.startswith("plinth POST /v1/forms/{id}/validate")), None)
    if validate:
        _, p50, p99, bad = validate
        ok = p50 <= FORM_P50_MS and p99 <= FORM_P99_MS and bad == 0
        out.append(f"| 12-field validation at 500 req/s: p50 ≤ {FORM_P50_MS:g} ms, p99 ≤ {FORM_P99_MS:g} ms "
                   f"| p50 {p50:.2f} ms, p99 {p99:.2f} ms | {verdict(ok)} |")
    page = next((v for (n, c), v in by.items() if n.startswith("plinth GET /forms/{id}")), None)
    if page:
        _, p50, _, bad = page
        out.append(f"| form page render: p50 ≤ {PAGE_P50_MS:g} ms | p50 {p50:.2f} ms | {verdict(p50 <= PAGE_P50_MS and bad == 0)} |")
    for (name, conns), (_, p50, _, bad) in sorted(by.items()):
        if name.startswith("slice: "):
            out.append(f"| {name.removeprefix('slice: ')} at 100 req/s: p50 ≤ {SLICE_P50_MS:g} ms | p50 {p50:.2f} ms, {bad} failed or non-2xx "
                       f"| {verdict(p50 <= SLICE_P50_MS and bad == 0)} |")
    if "inbox_paint" in streams:
        submissions, _, _, rows_p50, _ = streams["inbox_paint"]
        out.append(f"| inbox first rows with {submissions:,} submissions: measured and reported "
                   f"| p50 {rows_p50:.1f} ms | reported |")
    if "export" in streams:
        rows_, _, rate, _, _, growth = streams["export"]
        out.append(f"| export of {rows_:,} submissions: RSS growth ≤ {EXPORT_RSS_KIB // 1024} MiB, rows/s reported "
                   f"| {growth / 1024:.1f} MiB, {rate:,.0f} rows/s | {verdict(growth <= EXPORT_RSS_KIB)} |")
    if "backup" in streams:
        mib, _, rate, pause, slowest, _, _ = streams["backup"]
        ok = max(pause, slowest) <= BACKUP_PAUSE_MS
        out.append(f"| backup of {mib:,} MiB: longest write pause ≤ {BACKUP_PAUSE_MS:g} ms, throughput reported "
                   f"| cut {pause:.3f} ms, slowest write {slowest:.2f} ms; {rate:,.0f} MiB/s | {verdict(ok)} |")
    if "migration" in streams:
        records, _, _, rate, _ = streams["migration"]
        out.append(f"| migration of {records:,} small records (server stopped): records/s "
                   f"| {rate:,.0f} records/s | reported |")
    for rate, records, _, per_s, _, idle99, _, p99, failed in streams.get("backfill", []):
        if rate:
            ok = p99 <= 2 * idle99 and failed == 0
            out.append(f"| backfill of {records:,} records while serving (rate {rate:,}/s): p99 ≤ 2× idle "
                       f"| {p99:.2f} ms vs {idle99:.2f} ms idle ({p99 / idle99:.1f}×); {per_s:,.0f} records/s "
                       f"| {verdict(ok)} |")
        else:
            out.append(f"| backfill of {records:,} records while serving, unpaced: records/s reported "
                       f"| {per_s:,.0f} records/s; p99 {p99:.2f} ms vs {idle99:.2f} ms idle | reported |")
    warm = [ms for cache, ms in startups if cache == "warm"]
    if warm:
        out.append(f"| start-up with a warm cache ≤ {STARTUP_WARM_MS} ms | {max(warm)} ms (slowest) "
                   f"| {verdict(max(warm) <= STARTUP_WARM_MS)} |")
    return out


def main():
    load_tsv, criterion_dir, started, target, command = sys.argv[1:6]
    medians = criterion_medians(criterion_dir, float(started))
    rows, rss, startups, streams = load_figures(load_tsv)
    section = render(medians, rows, rss, startups, streams, command)
    sys.stdout.write(section)
    text = open(target).read() if os.path.exists(target) else "# Benchmarks\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN not in text or END not in text:
        sys.exit(f"{target}: the markers `{BEGIN}` and `{END}` are missing; add them where the run should go")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(target, "w") as f:
        f.write(head + section.rstrip("\n") + tail)


if __name__ == "__main__":
    main()
