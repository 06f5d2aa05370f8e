#!/usr/bin/env python3
"""Torrent benchmark: torrentdrive beside rqbit (and aria2c for full downloads).

One run on this machine, a swarm on loopback: an HTTP tracker in this script and aria2c
seeding a 256 MiB file with 1 MiB pieces.
  (a) With the seeder limited to 4 MiB/s: the time until a 64 KiB range at 50%, 75% and 99%
      of the not yet downloaded file has fully arrived (torrentdrive over WebDAV, rqbit over
      its HTTP streaming API), each on a fresh client.
  (b) Unlimited: the time to download the whole torrent, through torrentdrive, rqbit and
      aria2c.
Usage: benches/torrent.py [--bin target/release/torrentdrive] [--rqbit PATH] [--size-mib 256]
Needs: curl, aria2c; rqbit built outside the repo (`cargo install rqbit`).
"""
import argparse
import hashlib
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse

PIECE = 1 << 20
RANGE = 64 * 1024
USER, PASSWORD = "bench", "bench-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


class Tracker:
    """Answers announces with every other peer seen for the info-hash."""

    def __init__(self):
        peers = {}
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                q = urllib.parse.urlparse(self.path).query
                params = urllib.parse.parse_qs(q, encoding="latin-1")
                h = params.get("info_hash", [""])[0].encode("latin-1")
                port = int(params.get("port", ["0"])[0])
                with lock:
                    known = peers.setdefault(h, set())
                    compact = b"".join(bytes([127, 0, 0, 1]) + p.to_bytes(2, "big")
                                       for p in known if p != port)
                    if port:
                        known.add(port)
                body = b"d8:intervali2e12:min intervali1e5:peers%d:" % len(compact) + compact + b"e"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/announce"

    def stop(self):
        self.server.shutdown()


def bencode(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:" % len(x) + x
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(x)


def make_torrent(path, tracker):
    pieces = []
    with open(path, "rb") as f:
        while chunk := f.read(PIECE):
            pieces.append(hashlib.sha1(chunk).digest())
    info = {"length": os.path.getsize(path), "name": os.path.basename(path),
            "piece length": PIECE, "pieces": b"".join(pieces)}
    return bencode({"announce": tracker, "info": info})


class Proc:
    def __init__(self, args, **kw):
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def aria2_seed(work, torrent_file, data_dir, limit):
    port = free_port()
    args = ["aria2c", f"--dir={data_dir}", "--check-integrity=true", "--seed-ratio=0.0",
            "--enable-dht=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
            "--bt-tracker-interval=1", f"--listen-port={port}", "--quiet=true",
            "--bt-max-peers=0"]
    if limit:
        args.append(f"--max-overall-upload-limit={limit}")
    proc = Proc(args + [torrent_file])
    time.sleep(3)  # checking 256 MiB and announcing
    return proc


def curl_range(url, start, auth=None):
    args = ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}", "-r",
            f"{start}-{start + RANGE - 1}", "--max-time", "120", url]
    if auth:
        args[1:1] = ["-u", auth]
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - t
    if out.strip() != str(RANGE):
        raise SystemExit(f"short range from {url}: {out!r}")
    return elapsed


class Torrentdrive:
    name = "torrentdrive"

    def __init__(self, binary, work):
        self.data = tempfile.mkdtemp(dir=work)
        subprocess.run([binary, "--data", self.data, "user", "add", USER, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True)
        self.port = free_port()
        self.proc = Proc([binary, "--data", self.data, "serve", "--listen", f"127.0.0.1:{self.port}",
                          "--torrent-listen", "127.0.0.1:0", "--no-dht", "--no-lsd"],
                         env={**os.environ, "RUST_LOG": "warn"})
        wait_port(self.port)
        self.binary = binary

    def add(self, torrent_file, name):
        subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-T", torrent_file,
                        f"http://127.0.0.1:{self.port}/dav/Add/x.torrent"], check=True)
        url = f"http://127.0.0.1:{self.port}/dav/Downloads/{name}"
        while subprocess.run(["curl", "-sf", "-I", "-u", f"{USER}:{PASSWORD}", url],
                             capture_output=True).returncode != 0:
            time.sleep(0.02)
        return url

    def range_time(self, torrent_file, name, start):
        url = self.add(torrent_file, name)
        return curl_range(url, start, f"{USER}:{PASSWORD}")

    def full_time(self, torrent_file, name):
        t = time.perf_counter()
        self.add(torrent_file, name)
        while True:
            out = subprocess.run([self.binary, "--data", self.data, "transfers", "--json"],
                                 capture_output=True, text=True).stdout
            if any(x["progress"] >= 100.0 for x in json.loads(out or "[]")):
                return time.perf_counter() - t
            time.sleep(0.05)

    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.data, ignore_errors=True)


class Rqbit:
    name = "rqbit"

    def __init__(self, binary, work):
        self.dir = tempfile.mkdtemp(dir=work)
        self.port = free_port()
        self.binary = binary
        self.proc = Proc([binary, "--disable-dht", "--disable-dht-persistence", "--disable-lsd",
                          "--disable-upnp-port-forward", "--http-api-allow-create",
                          "--http-api-listen-addr", f"127.0.0.1:{self.port}",
                          "--listen-port", str(free_port()),
                          "server", "start", "--disable-persistence", self.dir],
                         env={**os.environ, "XDG_DATA_HOME": self.dir, "XDG_CACHE_HOME": self.dir,
                              "HOME": self.dir})
        wait_port(self.port)

    def add(self, torrent_file):
        out = subprocess.run(["curl", "-sf", "--data-binary", f"@{torrent_file}",
                              f"http://127.0.0.1:{self.port}/torrents?overwrite=true"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["id"]

    def range_time(self, torrent_file, name, start):
        tid = self.add(torrent_file)
        return curl_range(f"http://127.0.0.1:{self.port}/torrents/{tid}/stream/0", start)

    def full_time(self, torrent_file, name):
        t = time.perf_counter()
        tid = self.add(torrent_file)
        while True:
            out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{self.port}/torrents/{tid}/stats/v1"],
                                 capture_output=True, text=True).stdout
            if out and json.loads(out).get("finished"):
                return time.perf_counter() - t
            time.sleep(0.05)

    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def aria2_full(work, torrent_file):
    d = tempfile.mkdtemp(dir=work)
    t = time.perf_counter()
    subprocess.run(["aria2c", f"--dir={d}", "--seed-time=0", "--enable-dht=false",
                    "--bt-enable-lpd=false", "--quiet=true", f"--listen-port={free_port()}",
                    torrent_file], check=True)
    elapsed = time.perf_counter() - t
    shutil.rmtree(d, ignore_errors=True)
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/torrentdrive")
    ap.add_argument("--rqbit", default=shutil.which("rqbit") or "/tmp/rqbit-install/bin/rqbit")
    ap.add_argument("--size-mib", type=int, default=256)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="td-torrent-bench-", dir="/var/tmp")
    tracker = Tracker()
    try:
        seed_dir = os.path.join(work, "seed")
        os.makedirs(seed_dir)
        name = "big.bin"
        path = os.path.join(seed_dir, name)
        with open(path, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        size = os.path.getsize(path)
        torrent_file = os.path.join(work, "big.torrent")
        with open(torrent_file, "wb") as f:
            f.write(make_torrent(path, tracker.url))

        clients = [("torrentdrive", lambda: Torrentdrive(binary, work))]
        if args.rqbit and os.path.exists(args.rqbit):
            clients.append(("rqbit", lambda: Rqbit(args.rqbit, work)))
        else:
            print("rqbit not found: measuring torrentdrive and aria2c only")
        # (a) seeder at 4 MiB/s, ranges of a not yet downloaded file. A fresh seeder and a
        # fresh client for every range: a seeder's rate limiter still paying for the previous
        # client's burst would delay the next one.
        ranges = {}
        for cname, make in clients:
            ranges[cname] = []
            for frac in (0.50, 0.75, 0.99):
                seeder = aria2_seed(work, torrent_file, seed_dir, "4M")
                c = make()
                try:
                    start = int(size * frac) // RANGE * RANGE
                    ranges[cname].append(c.range_time(torrent_file, name, start))
                finally:
                    c.stop()
                    seeder.stop()
        # (b) unlimited seeder, whole torrent
        seeder = aria2_seed(work, torrent_file, seed_dir, None)
        full = {}
        for cname, make in clients:
            c = make()
            try:
                full[cname] = c.full_time(torrent_file, name)
            finally:
                c.stop()
        full["aria2c"] = aria2_full(work, torrent_file)
        seeder.stop()

        print(f"{size >> 20} MiB file, {PIECE >> 20} MiB pieces, aria2c seeding on loopback\n")
        print("| (a) 64 KiB range, seeder at 4 MiB/s | at 50% | at 75% | at 99% | median |")
        print("|---|---|---|---|---|")
        for cname, times in ranges.items():
            cells = " | ".join(f"{t:.2f} s" for t in times)
            print(f"| {cname} | {cells} | {statistics.median(times):.2f} s |")
        base = "rqbit" if "rqbit" in full else "aria2c"
        if "rqbit" in ranges:
            td, rq = statistics.median(ranges["torrentdrive"]), statistics.median(ranges["rqbit"])
            print(f"\ntorrentdrive's median range time: {rq / td:.2f}x rqbit's speed (above 1: faster)")
        print(f"\n| (b) whole torrent, unlimited | time | speed relative to {base} |")
        print("|---|---|---|")
        for cname, t in full.items():
            print(f"| {cname} | {t:.2f} s | {full[base] / t:.2f}x |")
    finally:
        tracker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
