#!/usr/bin/env python3
"""Web page benchmark: what the page and a player do over /api/v1/, beside torrentdrive's
own WebDAV and `rclone serve http` (a plain HTTP file server with ranges), in one run on
this machine, on loopback, with Basic auth, serving the same files. Measures:
  - GET of a 1 GiB file, hot cache (curl to /dev/null), MB/s, median of runs;
  - 2,000 random 64 KiB range GETs on one keep-alive connection (a player seeking), per s;
  - the listing of a 10,000-entry folder (the page's JSON, WebDAV's PROPFIND Depth 1,
    rclone's HTML index), ms, median of runs.
Prints a Markdown table with each figure as a ratio to the page's (/api/v1).

Usage: benches/web.py [--bin target/release/torrentdrive] [--runs N]
Needs: curl, rclone (Debian packages).
"""
import argparse
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# The WebDAV benchmark's setup: same user, listing request and helpers.
from webdav import (AUTH, BIG, ENTRIES, PASSWORD, PROPFIND_BODY, USER, bench_get, free_port,
                    wait_port)

RANGES = 2_000
RANGE_SIZE = 64 << 10


class Target:
    """One way to reach the files: `file_path(name)` and `list_request()` say how."""

    def __init__(self, name, port, file_path, list_request):
        self.name, self.port = name, port
        self.file_path, self.list_request = file_path, list_request

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

    def url(self, name):
        return f"http://127.0.0.1:{self.port}{self.file_path(name)}"


def request(conn, method, path, body=None, headers=None):
    h = dict(AUTH)
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


def start_torrentdrive(binary, work, big_src):
    data = os.path.join(work, "td-data")
    port = free_port()
    subprocess.run([binary, "--data", data, "user", "add", USER, "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    proc = subprocess.Popen(
        [binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}", "--metrics-listen", "off",
         "--torrent-listen", "127.0.0.1:0", "--no-dht", "--no-lsd"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    wait_port(port, proc, "torrentdrive")
    base = f"http://127.0.0.1:{port}"
    subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-T", big_src, f"{base}/dav/big.bin"],
                   check=True, stdout=subprocess.DEVNULL)
    assert request(http.client.HTTPConnection("127.0.0.1", port), "MKCOL", "/dav/many")[0] == 201

    def upload(part):
        c = http.client.HTTPConnection("127.0.0.1", port)
        for i in range(part, ENTRIES, 4):
            status, _ = request(c, "PUT", f"/dav/many/entry-{i:05}.txt", b"x" * (i % 100))
            assert status == 201, status
    threads = [threading.Thread(target=upload, args=(p,)) for p in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    page = Target("torrentdrive page (/api/v1)", port,
                  lambda name: f"/api/v1/files/content?path=/{name}",
                  ("GET", "/api/v1/files?path=/many", None, {}, 200))
    dav = Target("torrentdrive WebDAV (/dav)", port,
                 lambda name: f"/dav/{name}",
                 ("PROPFIND", "/dav/many/", PROPFIND_BODY,
                  {"Depth": "1", "Content-Type": "application/xml"}, 207))
    return proc, [page, dav]


def start_rclone(work, big_src):
    root = os.path.join(work, "rclone-root")
    os.makedirs(os.path.join(root, "many"))
    for i in range(ENTRIES):
        with open(os.path.join(root, "many", f"entry-{i:05}.txt"), "wb") as f:
            f.write(b"x" * (i % 100))
    os.link(big_src, os.path.join(root, "big.bin"))
    port = free_port()
    proc = subprocess.Popen(
        ["rclone", "serve", "http", root, "--addr", f"127.0.0.1:{port}", "--user", USER, "--pass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "rclone")
    return proc, Target("rclone serve http", port, lambda name: f"/{name}",
                        ("GET", "/many/", None, {}, 200))


def bench_ranges(t, offsets):
    conn = t.conn()
    path = t.file_path("big.bin")
    request(conn, "GET", path, headers={"Range": "bytes=0-0"})
    start = time.perf_counter()
    for off in offsets:
        status, body = request(conn, "GET", path, headers={"Range": f"bytes={off}-{off + RANGE_SIZE - 1}"})
        assert status == 206 and len(body) == RANGE_SIZE, f"{t.name}: {status} {len(body)}"
    return len(offsets) / (time.perf_counter() - start)


def bench_list(t, runs):
    method, path, body, headers, want = t.list_request
    conn = t.conn()
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        status, data = request(conn, method, path, body, headers)
        elapsed = time.perf_counter() - start
        assert status == want, f"{t.name}: {status}"
        assert data.count(b"entry-") >= ENTRIES, f"{t.name}: short listing"
        if i > 0:
            times.append(elapsed * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/torrentdrive")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    with tempfile.TemporaryDirectory(prefix="td-web-bench-") as work:
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            for _ in range(BIG >> 20):
                f.write(os.urandom(1 << 20))
        procs = []
        try:
            td, targets = start_torrentdrive(binary, work, big)
            procs.append(td)
            rc, rclone = start_rclone(work, big)
            procs.append(rc)
            targets.append(rclone)
            rng = random.Random(6)
            offsets = [rng.randrange(0, BIG - RANGE_SIZE) for _ in range(RANGES)]
            rows = []
            for t in targets:
                rows.append((t.name, bench_get(t, args.runs), bench_ranges(t, offsets), bench_list(t, args.runs)))
                print(f"measured {t.name}", file=sys.stderr)
        finally:
            for p in procs:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    base = rows[0]
    print(f"\n{args.runs} runs each (median), 1 GiB file, {RANGES} ranges of {RANGE_SIZE >> 10} KiB, "
          f"{ENTRIES} entries\n")
    print("Ratios: the page's (/api/v1) figure against each server's; above 1, the page is faster.\n")
    print("| server | GET MB/s | page ÷ it | range GETs/s | page ÷ it | listing ms | it ÷ page |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, get, ranges, listing in rows:
        print(f"| {name} | {get:.0f} | {base[1] / get:.2f} | {ranges:.0f} | {base[2] / ranges:.2f} "
              f"| {listing:.1f} | {listing / base[3]:.2f} |")


if __name__ == "__main__":
    main()
