#!/usr/bin/env python3
"""Peak memory of the daemon while it receives and serves one large file over WebDAV.

Starts target/release/torrentdrive on a temp data dir, PUTs SIZE bytes streamed from a
generator, GETs them back to a byte count, and prints the daemon's peak RSS (VmHWM) before
and after. Usage: benches/memory.py [--bin PATH] [--gib 4]
"""
import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/torrentdrive")
    ap.add_argument("--gib", type=int, default=4)
    args = ap.parse_args()
    size = args.gib << 30
    work = tempfile.mkdtemp(prefix="td-mem-", dir="/var/tmp")
    data = os.path.join(work, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = os.path.abspath(args.bin)
    subprocess.run([binary, "--data", data, "user", "add", "m", "--password-stdin"],
                   input="memory-password\n", text=True, check=True)
    proc = subprocess.Popen([binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/dav/big.bin"
        before = peak_rss_kib(proc.pid)
        start = time.time()
        subprocess.run(f"head -c {size} /dev/zero | curl -sf -u m:memory-password -T - {url}",
                       shell=True, check=True)
        put_s = time.time() - start
        after_put = peak_rss_kib(proc.pid)
        start = time.time()
        got = subprocess.run(f"curl -sf -u m:memory-password {url} | wc -c", shell=True,
                             check=True, capture_output=True, text=True).stdout.strip()
        get_s = time.time() - start
        assert int(got) == size, f"downloaded {got} bytes"
        after_get = peak_rss_kib(proc.pid)
        print(f"{args.gib} GiB: PUT {put_s:.1f} s, GET {get_s:.1f} s; daemon peak RSS "
              f"{before // 1024} MiB at start, {after_put // 1024} MiB after PUT, "
              f"{after_get // 1024} MiB after GET")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
