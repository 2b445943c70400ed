#!/usr/bin/env python3
"""Atrium end-to-end benchmark: register and fetch CT slices through the gateway with TLS.

Starts a fresh mesh (`atrium up --ephemeral-ports`, release build) for each client count, registers every
slice through the gateway (fsync-durable acknowledgements), fetches every slice back (SHA-256 checked by the
SDK), and prints images/s, MB/s and p50/p99 latency per image, plus each process's peak RSS.

Usage: run_bench.py --binary .build/release/atrium [--images 500] [--clients 1,4] [--data var/bench]
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

HERE = os.path.dirname(os.path.abspath(__file__))

# Reference figures for the same slices on a machine of this kind (../shared/bench/README.md, Orthanc 1.10.1,
# plain HTTP REST, no TLS). Context for the ratios below; issues #4 and #5 set goals against them.
ORTHANC = {("register", 1): 186.0, ("register", 4): 332.0, ("fetch", 1): 1315.0, ("fetch", 4): 2522.0}


def ensure_slices(directory, count):
    existing = [f for f in os.listdir(directory) if f.endswith(".dcm")] if os.path.isdir(directory) else []
    if len(existing) == count:
        return
    shutil.rmtree(directory, ignore_errors=True)
    print(f"generating {count} CT slices (512x512x16-bit) into {directory} ...", flush=True)
    subprocess.run([sys.executable, os.path.join(HERE, "gen_ct_dicom.py"), directory, str(count)], check=True,
                   stdout=subprocess.DEVNULL)


def peak_rss_by_process(marker):
    """Peak RSS (MiB) of every process whose environment names the mesh's data directory."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().decode(errors="replace")
            if f"ATRIUM_DATA_DIR={marker}" not in environ:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            name = cmd[2].decode() if len(cmd) > 2 else "?"
            if name == "processing":
                name = f"processing-{entry}"
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        result[name] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return result


def run_once(binary, slices, clients):
    data = tempfile.mkdtemp(prefix="atrium-bench-")
    up = subprocess.Popen([binary, "up", "--ephemeral-ports", "--data-dir", data], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    try:
        gateway = key = None
        deadline = time.time() + 60
        for line in up.stdout:
            line = line.strip()
            if line.startswith("export ATRIUM_API_KEY="):
                key = line.split("=", 1)[1]
            if line.startswith("export ATRIUM_GATEWAY="):
                gateway = line.split()[1].split("=", 1)[1]
            if "Press Ctrl-C" in line or time.time() > deadline:
                break
        if not (gateway and key):
            raise SystemExit("atrium up did not start; see " + data + "/log")
        out = subprocess.run([binary, "bench", "images", "--dir", slices, "--clients", str(clients), "--gateway", gateway,
                              "--ca", os.path.join(data, "pki", "ca.pem"), "--api-key", key],
                             check=True, capture_output=True, text=True).stdout
        phases = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        rss = peak_rss_by_process(data)
        return phases, rss
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/atrium")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--data", default="var/bench")
    parser.add_argument("--gateway-calls", type=int, default=5000)
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    slices = os.path.abspath(os.path.join(args.data, f"ct{args.images}"))
    ensure_slices(slices, args.images)

    rows = []
    for clients in [int(c) for c in args.clients.split(",")]:
        phases, rss = run_once(binary, slices, clients)
        for p in phases:
            rows.append(p)
        print(f"peak RSS with {clients} client(s), MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(rss.items())),
              flush=True)

    print()
    print(f"Atrium through the gateway (TLS, API key), {args.images} CT slices of ~525 kB, release build")
    header = f"{'phase':9} {'clients':>7} {'images/s':>9} {'MB/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'vs Orthanc ref':>15}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ref = ORTHANC.get((r["phase"], r["clients"]))
        ratio = f"{r['images_per_s'] / ref:.2f}x" if ref else "-"
        print(f"{r['phase']:9} {r['clients']:>7} {r['images_per_s']:>9.1f} {r['mb_per_s']:>7.1f} {r['p50_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {ratio:>15}")
    print("\nOrthanc reference (plain HTTP, same slices, this machine kind): register 186/332 images/s, "
          "fetch 1315/2522 images/s with 1/4 clients (../shared/bench/README.md).")

    gateway_bench(binary, args.gateway_calls)


def gateway_bench(binary, calls):
    """The gateway's added latency per unary call and its authorization-cache hit rate (`atrium bench gateway`)."""
    out = subprocess.run([binary, "bench", "gateway", "--calls", str(calls)], check=True, capture_output=True,
                         text=True, timeout=900).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    print()
    print(f"Gateway overhead, unary Account/WhoAmI on loopback, {calls} sequential calls, release build")
    header = (f"{'transport':10} {'direct p50/p99 us':>18} {'bare proxy p50/p99':>19} {'gateway p50/p99 us':>19} "
              f"{'added p50/p99 us':>17} {'goal p50 < 1 ms':>16}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if r["phase"] != "gateway-latency":
            continue
        verdict = "met" if r["added_p50_us"] < 1000 else "MISSED"
        print(f"{r['transport']:10} {str(r['direct_p50_us']) + '/' + str(r['direct_p99_us']):>18} "
              f"{str(r['bare_proxy_p50_us']) + '/' + str(r['bare_proxy_p99_us']):>19} "
              f"{str(r['gateway_p50_us']) + '/' + str(r['gateway_p99_us']):>19} "
              f"{str(r['added_p50_us']) + '/' + str(r['added_p99_us']):>17} {verdict:>16}")
    print("(bare proxy: the same hop with grpc-swift and no authorization, limits or audit: the floor under the gateway)")
    for r in rows:
        if r["phase"] == "auth-cache":
            print(f"authorization cache, {r['clients']} concurrent clients for {r['seconds']} s: {r['calls']} calls "
                  f"({r['calls_per_second']}/s), hit rate {r['hit_rate'] * 100:.2f}% ({r['hits']} hits, {r['misses']} misses)")


if __name__ == "__main__":
    main()
