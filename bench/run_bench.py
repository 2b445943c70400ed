#!/usr/bin/env python3
"""Atrium end-to-end benchmark: register and fetch CT slices through the gateway with TLS.

Starts a fresh mesh (`atrium up --ephemeral-ports`, release build) for each client count, registers every
slice through the gateway (fsync-durable acknowledgements), fetches every slice back (SHA-256 checked by the
SDK), and prints images/s, MB/s and p50/p99 latency per image, plus each process's peak RSS.

Then measures ListImages latency (a patient query through the gateway, as a hospital whose visibility rules apply)
over an index of 10,000 and 100,000 records, inserted straight into the registry's SQLite file: query latency
depends on the index alone, never on blobs.

Usage: run_bench.py --binary .build/release/atrium [--images 1000] [--clients 1,4] [--data var/bench]
                    [--query-records 10000,100000]
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import sqlite3
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


class Mesh:
    """`atrium up --ephemeral-ports` in a fresh data directory, stopped (and removed) on exit."""

    def __init__(self, binary):
        self.binary = binary
        self.data = tempfile.mkdtemp(prefix="atrium-bench-")
        self.up = subprocess.Popen([binary, "up", "--ephemeral-ports", "--data-dir", self.data], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        self.gateway = self.key = None
        deadline = time.time() + 60
        for line in self.up.stdout:
            line = line.strip()
            if line.startswith("export ATRIUM_API_KEY="):
                self.key = line.split("=", 1)[1]
            if line.startswith("export ATRIUM_GATEWAY="):
                self.gateway = line.split()[1].split("=", 1)[1]
            if "Press Ctrl-C" in line or time.time() > deadline:
                break
        if not (self.gateway and self.key):
            self.close()
            raise SystemExit("atrium up did not start; see " + self.data + "/log")

    def client_args(self, key=None):
        return ["--gateway", self.gateway, "--ca", os.path.join(self.data, "pki", "ca.pem"), "--api-key", key or self.key]

    def add_hospital(self, name):
        out = subprocess.run([self.binary, "security", "add-subscriber", "--data-dir", self.data, "--name", name,
                              "--kind", "hospital", "--roles", "register,receive"], check=True, capture_output=True,
                             text=True).stdout
        ident = next(l.split(" ", 1)[1] for l in out.splitlines() if l.startswith("subscriber "))
        key = next(l.split("=", 1)[1] for l in out.splitlines() if l.startswith("ATRIUM_API_KEY="))
        return ident, key

    def close(self):
        self.up.send_signal(signal.SIGINT)
        try:
            self.up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.up.kill()
        shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_once(binary, slices, clients):
    with Mesh(binary) as mesh:
        out = subprocess.run([binary, "bench", "images", "--dir", slices, "--clients", str(clients)] + mesh.client_args(),
                             check=True, capture_output=True, text=True).stdout
        phases = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        rss = peak_rss_by_process(mesh.data)
        return phases, rss


def fill_index(database, registrant, records):
    """`records` image rows for `registrant`: 10 per patient, in 2 series of 5, CT and MR alternately."""
    db = sqlite3.connect(database, timeout=30)
    rows = []
    base_ms = 1_770_000_000_000
    for n in range(records):
        patient, series, instance = n // 10, (n // 5) % 2, n % 5
        order = base_ms + n * 60_000
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(order / 1000)) + ".000"
        rows.append((f"img_bench{n:08d}", registrant, f"PB-{patient}", "Bench^Patient", f"1.2.999.{patient}",
                     f"1.2.999.{patient}.{series}", f"1.2.999.{patient}.{series}.{instance}", "1.2.840.10008.5.1.4.1.1.2",
                     "CT" if series == 0 else "MR", at, "CT-1", "CHEST", 512, 512, 16, 1, "1.2.840.10008.1.2.1", 525_000,
                     hashlib.sha256(str(n).encode()).hexdigest(), at, instance, b"", 1, order))
    db.executemany("""INSERT INTO image (id, registrant_id, patient_id, patient_name, study_uid, series_uid,
        sop_instance_uid, sop_class_uid, modality, acquired_at, device_id, body_part, rows, columns, bits_allocated,
        frames, transfer_syntax_uid, size_bytes, sha256, registered_at, instance_number, conditions,
        conditions_version, order_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""", rows)
    db.commit()
    db.close()


def query_bench(binary, records, calls=1000):
    with Mesh(binary) as mesh:
        registrant, key = mesh.add_hospital("Query bench")
        fill_index(os.path.join(mesh.data, "registry", "registry.sqlite"), registrant, records)
        out = subprocess.run([binary, "bench", "query", "--patients", str(records // 10), "--calls", str(calls),
                              "--label", str(records)] + mesh.client_args(key),
                             check=True, capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/atrium")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--query-records", default="10000,100000")
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

    print()
    print("ListImages through the gateway (TLS, API key, a hospital's visibility rules), 1000 sequential calls each,")
    print("first page of up to 100 records; Orthanc reference: a patient query in about 7 ms")
    header = f"{'records':>8} {'query':18} {'p50 ms':>7} {'p99 ms':>7} {'records/call':>13} {'vs Orthanc 7 ms':>16}"
    print(header)
    print("-" * len(header))
    for records in [int(r) for r in args.query_records.split(",") if r]:
        for r in query_bench(binary, records):
            print(f"{records:>8} {r['kind']:18} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['mean_records']:>13.1f} "
                  f"{7.0 / r['p50_ms']:>15.1f}x")

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
