#!/usr/bin/env python3
"""Idle CPU of every process of a running mesh: starts `atrium up` on ephemeral ports in a scratch directory,
waits until it is ready and has settled, then reads each process's user+system CPU time from /proc over
--seconds and prints it as a percentage of one core. Nothing calls the mesh meanwhile.

    python3 bench/idle_cpu.py --binary .build/release/atrium [--split] [--seconds 30] [--settle 10] [--json]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of a process (its own threads, not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid):
    """{pid: name} of the processes whose parent is `pid`, named by their `atrium serve <service>` argument and
    the instance their environment names."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        service = argv[2] if len(argv) > 2 else b"?"
        name = (b"atrium (all)" if service == b"all" else environ.get(b"ATRIUM_INSTANCE_ID", service)).decode()
        result[int(entry)] = name
    return result


def measure(binary, seconds, settle, split):
    directory = tempfile.mkdtemp(prefix="atrium-idle-")
    up = subprocess.Popen([binary, "up", "--ephemeral-ports", "--data-dir", directory] + (["--split"] if split else []), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in up.stdout:
            if "Press Ctrl-C" in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("atrium up did not become ready")
        else:
            raise RuntimeError("atrium up ended before it was ready")
        time.sleep(settle)
        processes = {up.pid: "up"} | children(up.pid)
        before = {pid: cpu_seconds(pid) for pid in processes}
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        after = {pid: cpu_seconds(pid) for pid in processes}
        return {name: 100 * (after[pid] - before[pid]) / elapsed for pid, name in processes.items()}, elapsed
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
        shutil.rmtree(directory, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/atrium")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--split", action="store_true", help="one process per service (atrium up --split)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    usage, elapsed = measure(args.binary, args.seconds, args.settle, args.split)
    if args.json:
        print(json.dumps({"seconds": elapsed, "percent_of_core": usage}))
        return
    mode = "atrium up --split" if args.split else "atrium up, one process"
    print(f"Idle CPU of a running mesh ({mode}, nothing calling it), over {elapsed:.0f} s, % of one core "
          f"(goal: under 0.5 each):")
    for name, percent in sorted(usage.items(), key=lambda item: item[0]):
        print(f"  {name:14} {percent:6.2f}%  {'ok' if percent < 0.5 else 'OVER'}")
    print(f"  {'total':14} {sum(usage.values()):6.2f}%")


if __name__ == "__main__":
    sys.exit(main())
