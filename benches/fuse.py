#!/usr/bin/env python3
"""FUSE benchmark: torrentdrive's mount beside the same data read directly and `rclone mount`.

All three on this machine in one run, hot cache:
  - torrentdrive: `torrentdrive mount` of a user's drive holding a 1 GiB file and a
    10,000-entry folder, copied in through the mount;
  - direct: the 1 GiB file's blob in the data dir (DATA/blobs/..), and the local source
    folder of the 10,000 entries (its "first" `ls -l` is just the first one of this run);
  - rclone mount: `rclone mount --read-only` of that local source folder.
Measures, median of runs:
  - sequential read of the 1 GiB file with 1 MiB reads, MB/s, after one warm-up read;
  - 20,000 random 4 KiB-aligned preads (fixed seed), reads/s, after one warm-up pass;
  - `ls -l` of the 10,000-entry folder, ms: the first one after mounting (torrentdrive is
    unmounted and mounted again after the copy), and warm ones, each 1.5 s after the last so
    that attribute timeouts have expired.
Prints a Markdown table (a "torrentdrive vs" ratio > 1 always means torrentdrive is ahead)
and PASS/FAIL for the targets: sequential read >= 0.8x direct, `ls -l` <= 150 ms, every
figure ahead of rclone mount.

Usage: benches/fuse.py [--bin target/release/torrentdrive] [--runs 3] [--work DIR] [--no-passthrough]
Needs: rclone, fuse3 (Debian packages), `cargo build --release`. Run as root.
"""
import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

USER, PASSWORD = "bench", "bench-password"
BIG = 1 << 30
CHUNK = 1 << 20
ENTRIES = 10_000
RANDOM_READS = 20_000
PAGE = 4096
TTL_WAIT = 1.5
LS_TARGET_MS = 150
SEQ_TARGET = 0.8


def mounted(path):
    """Whether `path` is a mount point now, from /proc/self/mounts."""
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1]
            for esc, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
                point = point.replace(esc, ch)
            if point == path:
                return True
    return False


class Mount:
    """A FUSE mount served by a foreground process (torrentdrive or rclone)."""

    def __init__(self, name, cmd, path, log_path):
        self.name, self.path, self.log_path = name, path, log_path
        self.left_mounted = False
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env={**os.environ, "RUST_LOG": "warn"})

    def log_tail(self):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-20:])

    def wait_mounted(self):
        deadline = time.time() + 30
        while not mounted(self.path):
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} exited with {self.proc.returncode} before mounting "
                         f"{self.path}; its log ends:\n{self.log_tail()}")
            if time.time() > deadline:
                sys.exit(f"{self.name} did not mount {self.path} within 30 s; its log ends:\n"
                         f"{self.log_tail()}")
            time.sleep(0.05)

    def stop(self):
        """SIGTERM, then force the unmount if the process left it. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if mounted(self.path):
            self.left_mounted = True
            subprocess.run(["fusermount3", "-u", "-z", self.path], stderr=subprocess.DEVNULL)
            if mounted(self.path):
                subprocess.run(["umount", "-l", self.path], stderr=subprocess.DEVNULL)
        return self.proc.returncode


def start_mount(live, name, cmd, path, work):
    m = Mount(name, cmd, path, os.path.join(work, f"{name.split()[0]}.log"))
    live.append(m)  # cleaned up by main() whatever happens next
    m.wait_mounted()
    return m


def make_source(src):
    """The 1 GiB file and the 10,000-entry folder, on disk."""
    os.makedirs(os.path.join(src, "many"))
    with open(os.path.join(src, "big.bin"), "wb") as f:
        for _ in range(BIG // (8 << 20)):
            f.write(os.urandom(8 << 20))
    for i in range(ENTRIES):
        with open(os.path.join(src, "many", f"entry-{i:05}.txt"), "wb") as f:
            f.write(b"x" * 100)


def find_blob(data):
    """The blob file of the 1 GiB file: the only file under DATA/blobs of exactly 1 GiB."""
    found = [os.path.join(d, n) for d, _, names in os.walk(os.path.join(data, "blobs"))
             for n in names if os.path.getsize(os.path.join(d, n)) == BIG]
    if len(found) != 1:
        sys.exit(f"expected one 1 GiB blob under {data}/blobs, found {len(found)}")
    return found[0]


def prepare_torrentdrive(binary, work, src, live, extra):
    """Creates the user, mounts, copies the files in, unmounts. Returns the mount command,
    the mount point and the blob of the 1 GiB file."""
    data, mnt = os.path.join(work, "td-data"), os.path.join(work, "td-mnt")
    os.makedirs(mnt)
    subprocess.run([binary, "--data", data, "user", "add", USER, "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, stdout=subprocess.DEVNULL)
    cmd = [binary, "--data", data, "mount", mnt, "--user", USER,
           "--torrent-listen", "off", "--no-dht", "--no-lsd"] + extra
    m = start_mount(live, "torrentdrive", cmd, mnt, work)
    subprocess.run(["cp", os.path.join(src, "big.bin"), os.path.join(mnt, "big.bin")], check=True)
    subprocess.run(["cp", "-r", os.path.join(src, "many"), os.path.join(mnt, "many")], check=True)
    size, count = os.path.getsize(os.path.join(mnt, "big.bin")), len(os.listdir(os.path.join(mnt, "many")))
    if size != BIG or count != ENTRIES:
        sys.exit(f"torrentdrive: after the copy big.bin has {size} bytes and many/ {count} entries")
    rc = m.stop()
    if rc != 0 or m.left_mounted:
        sys.exit(f"torrentdrive mount: exit code {rc} on SIGTERM"
                 + (", and it left the mount in place" if m.left_mounted else "")
                 + f"; its log ends:\n{m.log_tail()}")
    return cmd, mnt, find_blob(data)


def seq_read(path):
    """One sequential read of the whole file with 1 MiB reads; MB/s."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                break
            total += n
    secs = time.perf_counter() - start
    if total != BIG:
        sys.exit(f"{path}: read {total} bytes, expected {BIG}")
    return total / secs / 1e6


def random_reads(path, offsets):
    """4 KiB preads at the given offsets; reads/s."""
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        for off in offsets:
            if len(os.pread(fd, PAGE, off)) != PAGE:
                sys.exit(f"{path}: short read at {off}")
        return len(offsets) / (time.perf_counter() - start)
    finally:
        os.close(fd)


def ls_l(folder):
    """`ls -l FOLDER > /dev/null`; ms."""
    start = time.perf_counter()
    subprocess.run(["ls", "-l", folder], stdout=subprocess.DEVNULL, check=True,
                   env={**os.environ, "LC_ALL": "C"})
    return (time.perf_counter() - start) * 1000


def bench(name, big, many, runs):
    """Every measurement on one target. Call it right after mounting: its first act is the
    first `ls -l` after the mount."""
    print(f"benchmarking {name}...", file=sys.stderr)
    r = {"ls_first": ls_l(many)}
    seq_read(big)  # warm-up
    r["seq"] = statistics.median(seq_read(big) for _ in range(runs))
    rng = random.Random(4096)
    offsets = [rng.randrange(BIG // PAGE) * PAGE for _ in range(RANDOM_READS)]
    random_reads(big, offsets)  # warm-up
    r["rand"] = statistics.median(random_reads(big, offsets) for _ in range(runs))
    warm = []
    for _ in range(runs):
        time.sleep(TTL_WAIT)
        warm.append(ls_l(many))
    r["ls_warm"] = statistics.median(warm)
    count = len(os.listdir(many))
    if count != ENTRIES:
        sys.exit(f"{name}: {many} has {count} entries, expected {ENTRIES}")
    return r


ROWS = [  # key, label, format, higher is better
    ("seq", "sequential read 1 GiB, 1 MiB reads (MB/s, higher is better)", "{:.0f}", True),
    ("rand", "random 4 KiB preads (reads/s, higher is better)", "{:.0f}", True),
    ("ls_first", "`ls -l` 10,000 entries, first after mount (ms, lower is better)", "{:.1f}", False),
    ("ls_warm", "`ls -l` 10,000 entries, warm, attributes expired (ms, lower is better)", "{:.1f}", False),
]


def vs(td, other, higher):
    """torrentdrive relative to another: > 1 means torrentdrive is ahead."""
    return td / other if higher else other / td


def report(results):
    td, direct, rc = results["torrentdrive"], results["direct"], results["rclone mount"]
    print("| measure | torrentdrive | direct | rclone mount | torrentdrive vs direct | torrentdrive vs rclone |")
    print("|---|---|---|---|---|---|")
    for key, label, fmt, higher in ROWS:
        print(f"| {label} | {fmt.format(td[key])} | {fmt.format(direct[key])} | {fmt.format(rc[key])} "
              f"| {vs(td[key], direct[key], higher):.2f}x | {vs(td[key], rc[key], higher):.2f}x |")
    print()
    checks = [(f"sequential read >= {SEQ_TARGET}x direct ({vs(td['seq'], direct['seq'], True):.2f}x)",
               td["seq"] >= SEQ_TARGET * direct["seq"])]
    for key in ("ls_first", "ls_warm"):
        checks.append((f"`ls -l` {key[3:]} <= {LS_TARGET_MS} ms ({td[key]:.1f} ms)", td[key] <= LS_TARGET_MS))
    for key, label, _, higher in ROWS:
        ratio = vs(td[key], rc[key], higher)
        checks.append((f"ahead of rclone mount: {label.split(' (')[0]} ({ratio:.2f}x)", ratio > 1))
    for text, ok in checks:
        print(f"- {'PASS' if ok else 'FAIL'}: {text}")


def main():
    ap = argparse.ArgumentParser(description="torrentdrive's FUSE mount vs direct reads and rclone mount")
    ap.add_argument("--bin", default="target/release/torrentdrive")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default=None,
                    help="scratch folder on a disk, not tmpfs (default: a temp dir under /var/tmp)")
    ap.add_argument("--no-passthrough", action="store_true",
                    help="mount with --no-passthrough: complete files read through the daemon")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} not found: run `cargo build --release` first (or pass --bin)")
    for tool in ("rclone", "fusermount3"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install rclone fuse3")
    if os.geteuid() != 0:
        sys.exit("run as root (FUSE mounts)")
    work = os.path.realpath(tempfile.mkdtemp(prefix="td-fuse-bench-", dir=args.work or "/var/tmp"))
    fstype = subprocess.run(["stat", "-f", "-c", "%T", work], capture_output=True, text=True).stdout.strip()
    if fstype in ("tmpfs", "ramfs"):
        print(f"warning: {work} is on {fstype}, so 'direct' reads memory: pass --work DIR on a disk",
              file=sys.stderr)
    live = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # still clean up
    try:
        src = os.path.join(work, "src")
        print("setting up (a 1 GiB file, a 10,000-entry folder)...", file=sys.stderr)
        make_source(src)
        print("copying them into the torrentdrive mount...", file=sys.stderr)
        cmd, td_mnt, blob = prepare_torrentdrive(binary, work, src, live, ["--no-passthrough"] if args.no_passthrough else [])
        results = {}
        start_mount(live, "torrentdrive", cmd, td_mnt, work)
        results["torrentdrive"] = bench("torrentdrive", os.path.join(td_mnt, "big.bin"),
                                        os.path.join(td_mnt, "many"), args.runs)
        rc_mnt = os.path.join(work, "rclone-mnt")
        os.makedirs(rc_mnt)
        start_mount(live, "rclone mount", ["rclone", "mount", src, rc_mnt, "--read-only"], rc_mnt, work)
        results["rclone mount"] = bench("rclone mount", os.path.join(rc_mnt, "big.bin"),
                                        os.path.join(rc_mnt, "many"), args.runs)
        results["direct"] = bench("direct", blob, os.path.join(src, "many"), args.runs)
        report(results)
    finally:
        for m in live:
            m.stop()
        stuck = [m.path for m in live if mounted(m.path)]
        if stuck:
            print(f"still mounted, leaving {work} in place: {stuck}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
