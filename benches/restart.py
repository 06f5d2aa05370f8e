#!/usr/bin/env python3
"""Restart with many completed torrents: how long until the daemon serves and every torrent
is complete again (fastresume, no recheck of all data).

Makes N torrents of one file each, puts their data where the engine keeps it, drops the
.torrent files into /Add (the engine finds the data complete), waits until all are complete,
stops the daemon with SIGTERM (or SIGKILL with --kill), starts it again and times it.
Usage: benches/restart.py [--bin target/release/torrentdrive] [--count 100] [--mib 8] [--kill]
"""
import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PIECE = 256 * 1024
USER, PASSWORD = "bench", "bench-password"


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, data, port):
    p = subprocess.Popen([binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}",
                          "--torrent-listen", "127.0.0.1:0", "--no-dht", "--no-lsd"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "RUST_LOG": "warn"})
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.01)


def complete_count(port):
    out = subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}",
                          f"http://127.0.0.1:{port}/dav/Add/status.txt"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines()[1:] if " seeding " in line or " completed " in line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/torrentdrive")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--kill", action="store_true", help="stop with SIGKILL instead of SIGTERM")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="td-restart-", dir="/var/tmp")
    data = os.path.join(work, "data")
    try:
        subprocess.run([binary, "--data", data, "user", "add", USER, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        port = free_port()
        proc = start(binary, data, port)
        for i in range(args.count):
            content = os.urandom(args.mib << 20)
            name = f"file-{i:03}.bin"
            pieces = b"".join(hashlib.sha1(content[j:j + PIECE]).digest()
                              for j in range(0, len(content), PIECE))
            info = {"length": len(content), "name": name, "piece length": PIECE, "pieces": pieces}
            info_hash = hashlib.sha1(bencode(info)).hexdigest()
            folder = os.path.join(data, "torrents", info_hash)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, name), "wb") as f:
                f.write(content)
            torrent = os.path.join(work, f"{i}.torrent")
            with open(torrent, "wb") as f:
                f.write(bencode({"info": info}))
            subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-T", torrent,
                            f"http://127.0.0.1:{port}/dav/Add/{i}.torrent"], check=True)
        while complete_count(port) < args.count:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL if args.kill else signal.SIGTERM)
        proc.wait()
        t = time.perf_counter()
        proc = start(binary, data, port)
        serving = time.perf_counter() - t
        while complete_count(port) < args.count:
            time.sleep(0.05)
        complete = time.perf_counter() - t
        proc.terminate()
        proc.wait()
        how = "SIGKILL" if args.kill else "SIGTERM"
        print(f"{args.count} completed torrents of {args.mib} MiB, stopped with {how}: serving "
              f"again after {serving:.2f} s, all complete again after {complete:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
