#!/usr/bin/env python3
"""WebDAV benchmark: torrentdrive beside `rclone serve webdav` and Apache mod_dav.

All three run on this machine in one run, on loopback, with Basic auth, serving the same
files. Measures:
  - GET of a 1 GiB file, hot cache (curl to /dev/null), MB/s, median of runs;
  - PROPFIND Depth 1 of a 10,000-entry folder, ms, median of runs;
  - PUT of 1,000 small (4 KiB) files on one keep-alive connection, and on 4 at once.
Prints a Markdown table with each peer's figure as a ratio to torrentdrive's.

Usage: benches/webdav.py [--bin target/release/torrentdrive] [--runs N]
Needs: curl, rclone, apache2 (Debian packages). Run as root (Apache drops to www-data).
"""
import argparse
import base64
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

USER, PASSWORD = "bench", "bench-password"
BIG = 1 << 30
ENTRIES = 10_000
SMALL_FILES = 1_000
SMALL_SIZE = 4096
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
    b"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/>"
    b"<D:getcontenttype/></D:prop></D:propfind>"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} did not start")


class Target:
    def __init__(self, name, port, prefix, proc):
        self.name, self.port, self.prefix, self.proc = name, port, prefix, proc

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{self.prefix}{path}"

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

    def request(self, conn, method, path, body=None, headers=None):
        h = dict(AUTH)
        h.update(headers or {})
        conn.request(method, self.prefix + path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, data

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def fill_dir(root, big_src):
    """The files the peers serve straight from disk."""
    os.makedirs(os.path.join(root, "many"))
    for i in range(ENTRIES):
        with open(os.path.join(root, "many", f"entry-{i:05}.txt"), "wb") as f:
            f.write(b"x" * (i % 100))
    os.makedirs(os.path.join(root, "small"))
    shutil.copyfile(big_src, os.path.join(root, "big.bin"))


def start_torrentdrive(binary, work, big_src):
    data = os.path.join(work, "td-data")
    port = free_port()
    subprocess.run(
        [binary, "--data", data, "user", "add", USER, "--password-stdin"],
        input=PASSWORD + "\n", text=True, check=True)
    proc = subprocess.Popen(
        [binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    wait_port(port, proc, "torrentdrive")
    t = Target("torrentdrive", port, "/dav/", proc)
    subprocess.run(["curl", "-sf", "-u", f"{USER}:{PASSWORD}", "-T", big_src, t.url("big.bin")], check=True)
    conn = t.conn()
    for folder in ("many", "small"):
        assert t.request(conn, "MKCOL", folder)[0] == 201
    # 10,000 entries, four uploaders at a time.
    def upload(part):
        c = t.conn()
        for i in range(part, ENTRIES, 4):
            status, _ = t.request(c, "PUT", f"many/entry-{i:05}.txt", b"x" * (i % 100))
            assert status == 201, status
    threads = [threading.Thread(target=upload, args=(p,)) for p in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return t


def start_rclone(work, big_src):
    root = os.path.join(work, "rclone-root")
    fill_dir(root, big_src)
    port = free_port()
    proc = subprocess.Popen(
        ["rclone", "serve", "webdav", root, "--addr", f"127.0.0.1:{port}", "--user", USER, "--pass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "rclone")
    return Target("rclone serve webdav", port, "/", proc)


def start_apache(work, big_src):
    root = os.path.join(work, "apache-root")
    fill_dir(root, big_src)
    conf_dir = os.path.join(work, "apache")
    os.makedirs(conf_dir)
    subprocess.run(["htpasswd", "-bc", os.path.join(conf_dir, "users"), USER, PASSWORD],
                   check=True, capture_output=True)
    subprocess.run(["chown", "-R", "www-data:www-data", root, conf_dir], check=True)
    os.chmod(work, 0o755)
    port = free_port()
    mods = "/usr/lib/apache2/modules"
    conf = f"""
ServerRoot {conf_dir}
Listen 127.0.0.1:{port}
PidFile {conf_dir}/httpd.pid
ErrorLog {conf_dir}/error.log
Mutex file:{conf_dir}
User www-data
Group www-data
ServerName localhost
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authn_core_module {mods}/mod_authn_core.so
LoadModule authn_file_module {mods}/mod_authn_file.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule authz_user_module {mods}/mod_authz_user.so
LoadModule auth_basic_module {mods}/mod_auth_basic.so
LoadModule mime_module {mods}/mod_mime.so
LoadModule dav_module {mods}/mod_dav.so
LoadModule dav_fs_module {mods}/mod_dav_fs.so
TypesConfig /etc/mime.types
DavLockDB {conf_dir}/davlock
DocumentRoot {root}
KeepAliveTimeout 60
MaxKeepAliveRequests 0
EnableSendfile On
<Directory {root}>
    Dav On
    AuthType Basic
    AuthName bench
    AuthUserFile {conf_dir}/users
    Require valid-user
</Directory>
"""
    path = os.path.join(conf_dir, "httpd.conf")
    with open(path, "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["apache2", "-f", path, "-DFOREGROUND"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "apache2")
    return Target("Apache mod_dav", port, "/", proc)


def bench_get(t, runs):
    speeds = []
    for i in range(runs + 1):
        out = subprocess.run(
            ["curl", "-sf", "-o", "/dev/null", "-u", f"{USER}:{PASSWORD}", "-w", "%{size_download} %{time_total}",
             t.url("big.bin")], capture_output=True, text=True, check=True).stdout.split()
        size, secs = int(out[0]), float(out[1])
        assert size == BIG, f"{t.name}: got {size} bytes"
        if i > 0:  # the first run warms the cache
            speeds.append(size / secs / 1e6)
    return statistics.median(speeds)


def bench_propfind(t, runs):
    conn = t.conn()
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        status, body = t.request(conn, "PROPFIND", "many/", PROPFIND_BODY,
                                 {"Depth": "1", "Content-Type": "application/xml"})
        elapsed = time.perf_counter() - start
        assert status == 207, status
        assert body.count(b"entry-") >= ENTRIES, f"{t.name}: short listing"
        if i > 0:
            times.append(elapsed * 1000)
    return statistics.median(times)


def bench_put(t, parallel, tag):
    folder = f"small/{tag}"
    assert t.request(t.conn(), "MKCOL", folder)[0] in (201,)
    payloads = [os.urandom(SMALL_SIZE) for _ in range(SMALL_FILES)]
    def worker(part):
        c = t.conn()
        for i in range(part, SMALL_FILES, parallel):
            status, _ = t.request(c, "PUT", f"{folder}/f{i:04}.bin", payloads[i])
            assert status in (201, 204), f"{t.name}: PUT {status}"
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(p,)) for p in range(parallel)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return SMALL_FILES / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/torrentdrive")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir under /var/tmp)")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="td-bench-", dir=args.work or "/var/tmp")
    targets = []
    try:
        big = os.path.join(work, "big.src")
        subprocess.run(["head", "-c", str(BIG), "/dev/urandom"], stdout=open(big, "wb"), check=True)
        print("setting up (10,000-entry folders, 1 GiB files)...", file=sys.stderr)
        targets = [start_torrentdrive(binary, work, big), start_rclone(work, big), start_apache(work, big)]
        results = {}
        for t in targets:
            print(f"benchmarking {t.name}...", file=sys.stderr)
            results[t.name] = {
                "get": bench_get(t, args.runs),
                "propfind": bench_propfind(t, args.runs * 2),
                "put1": bench_put(t, 1, "seq"),
                "put4": bench_put(t, 4, "par"),
            }
        td = results["torrentdrive"]
        rows = [
            ("GET 1 GiB, hot cache (MB/s, higher is better)", "get", "{:.0f}", True),
            ("PROPFIND Depth 1, 10,000 entries (ms, lower is better)", "propfind", "{:.0f}", False),
            ("PUT 1,000 x 4 KiB, 1 connection (files/s, higher is better)", "put1", "{:.0f}", True),
            ("PUT 1,000 x 4 KiB, 4 connections (files/s, higher is better)", "put4", "{:.0f}", True),
        ]
        names = [t.name for t in targets]
        print("| measure | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for label, key, fmt, higher in rows:
            cells = []
            for n in names:
                v = results[n][key]
                if n == "torrentdrive":
                    cells.append(fmt.format(v))
                else:
                    # torrentdrive relative to the peer: > 1 means torrentdrive is ahead.
                    ratio = td[key] / v if higher else v / td[key]
                    cells.append(f"{fmt.format(v)} (torrentdrive {ratio:.2f}x)")
            print(f"| {label} | " + " | ".join(cells) + " |")
    finally:
        for t in targets:
            t.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
