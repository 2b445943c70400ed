#!/usr/bin/env python3
"""Atrium end-to-end benchmark: register and fetch CT slices through the gateway with TLS.

Starts a fresh mesh (`atrium up --ephemeral-ports`, release build) for each client count, registers every
slice through the gateway (fsync-durable acknowledgements), fetches every slice back (SHA-256 checked by the
SDK), and prints images/s, MB/s and p50/p99 latency per image, plus each process's peak RSS.

Then measures ListImages latency (a patient query through the gateway, as a hospital whose visibility rules apply)
over an index of 10,000 and 100,000 records, inserted straight into the registry's SQLite file: query latency
depends on the index alone, never on blobs.

Delivery (#5): fetch in each encoding (original and JPEG-LS, one image per call and a series per call) through
the gateway and straight to delivery; the JPEG-LS compression ratio against CharLS through imagecodecs on real CT
and MR slices; SubmitPrintJob latency; and a 200-slice series fetched over a link shaped to 100 Mbit/s (a network
namespace, a veth pair and a token-bucket filter), raw against JPEG-LS.

Imaging: AtriumImaging's filters (one 512x512 slice, and per slice over a 200x512x512 stack) and MIP along the slice
axis, single-threaded (`atrium bench imaging`), next to scipy.ndimage / numpy single-threaded (scipy_baseline.py,
a copy of ../shared/bench/scipy_baseline.py) run in the same invocation on the same 200 slices.

Usage: run_bench.py --binary .build/release/atrium [--images 1000] [--clients 1,4] [--data var/bench]
                    [--query-records 10000,100000] [--skip idle,register,orthanc,query,gateway,ratio,print,link,imaging,processing,pagecache]
                    [--imaging-reps 15,5]

Idle: each process of a mesh nobody calls, CPU over 30 s (bench/idle_cpu.py).
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Orthanc 1.10.1 (Debian), run by orthanc_baseline.sh in this invocation on the same slices: {(phase, clients):
# images/s}, its CPU per image, and its patient query. Empty when Orthanc could not run; then no ratio is printed.
ORTHANC = {}
ORTHANC_CPU_MS = {}
RUNS = 3
ORTHANC_FIND_MS = None
# nginx over TLS 1.3 (and plain HTTP) to curl clients on the same slices, this run: {(scheme, clients): images/s}.
TLS_CEILING = {}
BATCH = 50

# scipy single-threaded on one 512x512 slice, MPix/s, and numpy's MIP over 200x512x512 in ms, measured on a machine
# of this kind (../shared/bench/README.md); the issue's goal is at least scipy's figure from the same run.
SCIPY_REFERENCE = {"gaussian sigma=1.5": 57.0, "sobel magnitude": 36.0, "laplace": 70.0, "line 3x3 convolve": 75.0,
                   "DoG bandpass s1-s3": 26.0}
NUMPY_MIP_REFERENCE_MS = 13.0
# `atrium bench imaging` figure -> the scipy_baseline.py figure it is compared with. Atrium's `lines` is the max |response|
# of four 3x3 line masks; scipy's figure is ONE 3x3 convolve (the horizontal mask), so that pair is not like for like.
IMAGING_PAIRS = [
    ("gaussian sigma=1.5", "gaussian sigma=1.5"),
    ("sobel magnitude", "sobel magnitude"),
    ("laplace", "laplace"),
    ("lines: 4 masks, max |response|", "line 3x3 convolve"),
    ("DoG bandpass s1-s3", "DoG bandpass s1-s3"),
]


def ensure_slices(directory, count):
    existing = [f for f in os.listdir(directory) if f.endswith(".dcm")] if os.path.isdir(directory) else []
    if len(existing) == count:
        return
    shutil.rmtree(directory, ignore_errors=True)
    print(f"generating {count} CT slices (512x512x16-bit) into {directory} ...", flush=True)
    subprocess.run([sys.executable, os.path.join(HERE, "gen_ct_dicom.py"), directory, str(count)], check=True,
                   stdout=subprocess.DEVNULL)


# Directories of finished runs, removed when the whole benchmark ends: ext4 skips inodes freed in the last 60-360 s
# when it allocates, so deleting a run's 500 blobs made the next run's file creation several times dearer (ext4's
# recently_deleted was 8% of the registry's CPU). Every peer's and Atrium's runs are treated alike.
LEFTOVERS = []


def discard(path):
    """Removes `path` when the benchmark ends."""
    LEFTOVERS.append(path)


def mesh_processes(marker):
    """{name: pid} of every process whose environment names the mesh's data directory: the service it serves
    (`all` in the one-process mode), `processing-<pid>` for each processing instance, `up` for the launcher."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if f"ATRIUM_DATA_DIR={marker}".encode() not in f.read():
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        name = cmd[2].decode() if len(cmd) > 2 and cmd[1] == b"serve" else cmd[1].decode() if len(cmd) > 1 else "?"
        result.setdefault(name, []).append(int(entry))
    named = {}
    for name, pids in result.items():
        for index, pid in enumerate(sorted(pids)):
            named[f"{name}-{index + 1}" if len(pids) > 1 else name] = pid
    return named


def cpu_seconds(pid):
    """CPU seconds (user + system) process `pid` has used so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def peak_rss_by_process(marker):
    """Peak RSS (MiB) of every process of the mesh."""
    result = {}
    for name, pid in mesh_processes(marker).items():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        result[name] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return result


class Mesh:
    """`atrium up --ephemeral-ports` in a fresh data directory, stopped (and removed) on exit: one process per service
    (`--split`, the default here, so that the figures of earlier issues stay comparable), or one process for all."""

    def __init__(self, binary, processing=2, env=(), split=True):
        self.binary = binary
        self.split = split
        self.data = tempfile.mkdtemp(prefix="atrium-bench-")
        extra = [f"--env={setting}" for setting in env] + (["--split", "--processing", str(processing)] if split else [])
        self.up = subprocess.Popen([binary, "up", "--ephemeral-ports", "--data-dir", self.data]
                                   + extra, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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
        return self.add_subscriber(name, "hospital", "register,receive")

    def add_subscriber(self, name, kind, roles):
        out = subprocess.run([self.binary, "security", "add-subscriber", "--data-dir", self.data, "--name", name,
                              "--kind", kind, "--roles", roles], check=True, capture_output=True,
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
        discard(self.data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_once(binary, slices, clients, split=True):
    with Mesh(binary, split=split) as mesh:
        # The direct route (straight to delivery) exists only when delivery is a process of its own.
        direct = ["--mesh-data", mesh.data] if split else []
        watch = ",".join(f"{name}={pid}" for name, pid in sorted(mesh_processes(mesh.data).items()) if name != "up")
        out = subprocess.run([binary, "bench", "images", "--dir", slices, "--clients", str(clients),
                              "--encodings", "original,jpeg-ls", "--batch", str(BATCH), "--watch", watch] + direct
                             + mesh.client_args(), check=True, capture_output=True, text=True).stdout
        phases = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        for via in ("bytes", "grpc"):
            phases.append(cli_fetch(binary, mesh, clients, via))
        rss = peak_rss_by_process(mesh.data)
    # Registration inside gRPC messages (Register through the gateway), on a fresh mesh of its own so that it
    # stores the same slices anew: the byte path registered them above.
    with Mesh(binary, split=split) as mesh:
        watch = ",".join(f"{name}={pid}" for name, pid in sorted(mesh_processes(mesh.data).items()) if name != "up")
        out = subprocess.run([binary, "bench", "images", "--dir", slices, "--clients", str(clients), "--only-register",
                              "--register-via", "grpc", "--watch", watch] + mesh.client_args(),
                             check=True, capture_output=True, text=True).stdout
        phases += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for phase in phases:
        phase["mode"] = "split" if split else "one"
    return phases, rss


def cli_fetch(binary, mesh, clients, via):
    """`atrium images fetch` of every image, as a hospital runs it: `clients` processes at once, each fetching its share
    into a directory (each file verified, fsynced and renamed into place). The time includes starting the processes."""
    listed = subprocess.run([binary, "images", "list", "--limit", "0", "--json"] + mesh.client_args(), check=True,
                            capture_output=True, text=True).stdout
    ids = [json.loads(line)["imageId"] for line in listed.splitlines() if line.startswith("{")]
    out = tempfile.mkdtemp(prefix="fetch-", dir=mesh.data)
    watched = {name: pid for name, pid in mesh_processes(mesh.data).items() if name != "up"}
    cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        started = time.perf_counter()
        processes = [subprocess.Popen([binary, "images", "fetch", "--via", via, "-o", os.path.join(out, str(k))]
                                      + ids[k::clients] + mesh.client_args(), stdout=subprocess.DEVNULL)
                     for k in range(clients)]
        codes = [p.wait() for p in processes]
        seconds = time.perf_counter() - started
        if any(codes):
            raise SystemExit(f"atrium images fetch --via {via} failed: exit codes {codes}")
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) * 1000 / len(ids) for name, pid in watched.items()}
        cpu["client"] = (children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime) * 1000 / len(ids)
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out) for f in files)
    finally:
        discard(out)
    return {"phase": "fetch", "route": f"cli-{via}", "encoding": "original", "batch": len(ids) // clients,
            "clients": clients, "images": len(ids), "images_per_s": len(ids) / seconds, "mb_per_s": size / 1e6 / seconds,
            "p50_ms": seconds * 1000, "p99_ms": seconds * 1000, "cpu_ms_per_image": cpu}


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
    parser.add_argument("--runs", type=int, default=3, help="runs of Orthanc and of each Atrium mode; rows are medians")
    parser.add_argument("--data", default="var/bench")
    parser.add_argument("--gateway-calls", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50, help="images per fetch call for the series figures")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    parser.add_argument("--imaging-reps", default="15,5", help="timed runs per imaging figure: one slice, the stack")
    args = parser.parse_args()
    global BATCH, RUNS
    BATCH = args.batch
    RUNS = args.runs
    binary = os.path.abspath(args.binary)
    slices = os.path.abspath(os.path.join(args.data, f"ct{args.images}"))
    ensure_slices(slices, args.images)

    skip = set(args.skip.split(",")) if args.skip else set()
    if "idle" not in skip:
        for mode in ([], ["--split"]):
            subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "idle_cpu.py"),
                            "--binary", binary] + mode, check=True)
            print()
    if "ratio" not in skip:
        ratio_bench(binary, slices)
    if "print" not in skip:
        print_bench(binary, slices)
    if "link" not in skip:
        link_bench(binary, os.path.abspath(os.path.join(args.data, "ct200")))
    if "imaging" not in skip:
        imaging_bench(binary, os.path.abspath(os.path.join(args.data, "ct200")), args.imaging_reps)
    if "processing" not in skip:
        print()
        processing_bench(binary, os.path.abspath(os.path.join(args.data, "ct200")))
    if "register" not in skip:
        register_and_fetch(binary, slices, args, skip)
    if "query" not in skip:
        print_query_figures(binary, args.query_records)
    if "gateway" not in skip:
        gateway_bench(binary, args.gateway_calls)
    if "pagecache" not in skip:
        # Last: it frees pages, which would make whatever ran after it store files more cheaply.
        print()
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "page_cache.py"),
                        os.path.abspath(os.path.join(args.data, "pagecache"))], check=True)


def register_and_fetch(binary, slices, args, skip):
    if "orthanc" not in skip:
        orthanc_bench(slices)
        tls_ceiling_bench(slices)
    rows = []
    for split in (False, True):
        for clients in [int(c) for c in args.clients.split(",")]:
            # RUNS fresh meshes; each row is the run with the median images/s (throughput swings by a third between
            # runs on this shared machine, Orthanc's as much as Atrium's).
            measured = {}
            for _ in range(RUNS):
                phases, rss = run_once(binary, slices, clients, split=split)
                for p in phases:
                    measured.setdefault((p["phase"], p["route"], p.get("encoding"), p.get("batch", 1)), []).append(p)
                print(f"peak RSS with {clients} client(s), {'split' if split else 'one process'}, MiB: "
                      + ", ".join(f"{k} {v:.0f}" for k, v in sorted(rss.items())), flush=True)
            for runs in measured.values():
                row = dict(median_run(runs, "images_per_s"))
                row["runs"] = [r["images_per_s"] for r in runs]
                rows.append(row)

    print()
    print(f"Atrium, {args.images} CT slices of ~525 kB, release build. mode one: every service in one process (atrium serve")
    print("all), in-process calls behind the gateway's TLS; split: one process per service. route gateway: TLS with an API")
    print("key, then (split) mTLS to delivery; direct: mTLS straight to delivery (what the gateway costs); bytes: the byte")
    print("path (AuthorizeFetch through the gateway for `batch` images, then one HTTPS GET per image from the data plane;")
    print("for register: AuthorizeUpload for 8 images at a time, then one HTTPS POST per image, answered once durable);")
    print("cli-bytes / cli-grpc: `atrium images fetch --via bytes|grpc` processes, one per client, writing fsynced files")
    print("(batch: images per process; p50/p99: the whole run). Other routes fetch into memory. batch: images per call;")
    print(f"p50/p99 per call. Each row is the median of {RUNS} runs, each on a fresh mesh (all runs listed last).")
    header = (f"{'mode':5} {'phase':9} {'route':7} {'encoding':9} {'batch':>5} {'clients':>7} {'images/s':>9} {'MB/s':>7} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'vs Orthanc':>11} {'vs nginx TLS':>13}  runs (images/s)")
    print(header)
    print("-" * len(header))
    for r in rows:
        ref = ORTHANC.get((r["phase"], r["clients"]))
        ratio = f"{r['images_per_s'] / ref:.2f}x" if ref and r["phase"] in ("register", "fetch") else "-"
        ceiling = TLS_CEILING.get(("https", r["clients"]))
        versus_tls = f"{r['images_per_s'] / ceiling:.2f}x" if ceiling and r["phase"] == "fetch" else "-"
        print(f"{r['mode']:5} {r['phase']:9} {r['route']:7} {r.get('encoding', '-'):9} {r.get('batch', 1):>5} {r['clients']:>7} "
              f"{r['images_per_s']:>9.1f} {r['mb_per_s']:>7.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {ratio:>11} {versus_tls:>13}"
              f"  {'/'.join(f'{x:.0f}' for x in r.get('runs', []))}")
    print("\nvs Orthanc: Atrium's images/s over Orthanc's with the same number of clients, both measured above in this run")
    print("on the same slices (Orthanc over plain HTTP, one image per request; Atrium over TLS). vs nginx TLS: over nginx")
    print("serving the same files over TLS 1.3 to as many curl clients, this run: the machine's TLS ceiling, no hashing.")
    print_cpu_table(rows)


def print_cpu_table(rows):
    """Where each image's CPU goes: milliseconds per image in each process (the client included), per phase, from the
    rows' cpu_ms_per_image; Orthanc's own CPU per image for the same phase and client count beside them."""
    rows = [r for r in rows if r.get("cpu_ms_per_image") and r["phase"] in ("register", "fetch")]
    if not rows:
        return
    # Processes that did nothing measurable in any phase (backup, catalog) are left out; the sum counts them all.
    names = sorted({name for r in rows for name, ms in r["cpu_ms_per_image"].items() if name != "client" and ms >= 0.05})
    print("\nCPU per image, ms, by process (user + system, this run; client: the load generator or the CLI processes;")
    print("Orthanc: its server process only, same phase and clients, one image per request over plain HTTP)")
    header = (f"{'mode':5} {'phase':9} {'route':9} {'encoding':9} {'batch':>5} {'clients':>7} {'client':>7} "
              + " ".join(f"{n[:12]:>12}" for n in names) + f" {'server sum':>10} {'Orthanc':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        cpu = r["cpu_ms_per_image"]
        server = sum(v for k, v in cpu.items() if k != "client")
        orthanc = ORTHANC_CPU_MS.get((r["phase"], r["clients"]))
        print(f"{r['mode']:5} {r['phase']:9} {r['route']:9} {r.get('encoding', '-'):9} {r.get('batch', 1):>5} {r['clients']:>7} "
              f"{cpu.get('client', 0):>7.2f} " + " ".join(f"{cpu[n]:>12.2f}" if n in cpu else f"{'':>12}" for n in names)
              + f" {server:>10.2f} {orthanc if orthanc is not None else float('nan'):>8.2f}")


def median_run(runs, key):
    """The run whose `key` is the median (the lower middle of an even count), so that one row's figures stay together."""
    ordered = sorted(runs, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def orthanc_bench(slices):
    """Orthanc over plain HTTP on the same slices, in this invocation (bench/orthanc_baseline.sh: its own network
    namespace, one run): ingest with 1 and 4 clients, retrieve with 1 and 4, a patient query. Fills ORTHANC."""
    global ORTHANC_FIND_MS
    work = tempfile.mkdtemp(prefix="orthanc-bench-")
    try:
        done = subprocess.run(["bash", os.path.join(HERE, "orthanc_baseline.sh"), slices, str(RUNS), work],
                              capture_output=True, text=True, timeout=1800)
    finally:
        discard(work)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not rows:
        print(f"Orthanc did not run (exit {done.returncode}): {done.stderr.strip()[-400:]}; no ratios against it below.")
        return
    runs = {}
    for r in rows:
        if r["op"] in ("ingest", "retrieve"):
            phase = "register" if r["op"] == "ingest" else "fetch"
            runs.setdefault((phase, r["clients"]), []).append(r)
        elif r["op"] == "find" and r["what"].startswith("find PatientID (instance level, ids only)"):
            ORTHANC_FIND_MS = r["median_ms"]
    for key, measured in runs.items():
        middle = median_run(measured, "img_s")
        ORTHANC[key] = middle["img_s"]
        ORTHANC_CPU_MS[key] = middle["orthanc_cpu_ms_per_img"]
    print(f"Orthanc 1.10.1, plain HTTP REST, {rows[0]['n']} slices, this run (bench/orthanc_baseline.sh; the median of "
          f"{RUNS} runs: " + "; ".join(f"{phase} {clients}: " + ", ".join(f"{r['img_s']:.0f}" for r in measured)
                                      for (phase, clients), measured in sorted(runs.items())) + " images/s):")
    for (phase, clients), rate in sorted(ORTHANC.items()):
        print(f"  {phase:8} {clients} client(s): {rate:8.1f} images/s, Orthanc CPU {ORTHANC_CPU_MS[(phase, clients)]:.2f} ms/image")
    if ORTHANC_FIND_MS is not None:
        print(f"  patient query (instance level, IDs only): {ORTHANC_FIND_MS:.2f} ms median")
    print(flush=True)


def tls_ceiling_bench(slices):
    """nginx serving the same slices over TLS 1.3 and plain HTTP to curl clients (bench/tls_ceiling.py): what TLS on
    both ends costs on this machine, with no hashing or parsing on either side. Fills TLS_CEILING."""
    done = subprocess.run([sys.executable, os.path.join(HERE, "tls_ceiling.py"), slices], capture_output=True, text=True,
                          timeout=600)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not rows:
        print(f"nginx did not run (exit {done.returncode}): {done.stderr.strip()[-400:]}")
        return
    print("nginx 1.22 (Debian) serving the same slices to curl clients, this run (bench/tls_ceiling.py; no hashing):")
    for r in rows:
        TLS_CEILING[(r["scheme"], r["clients"])] = r["images_per_s"]
        print(f"  {r['scheme']:5} {r['clients']} client(s): {r['images_per_s']:8.1f} images/s, {r['mb_per_s']:7.1f} MB/s")
    print(flush=True)


def print_query_figures(binary, query_records):
    print()
    print("ListImages through the gateway (TLS, API key, a hospital's visibility rules), 1000 sequential calls each,")
    reference = f"{ORTHANC_FIND_MS:.2f} ms" if ORTHANC_FIND_MS else "not run"
    print(f"first page of up to 100 records; Orthanc's patient query in this run: {reference}")
    header = f"{'records':>8} {'query':18} {'p50 ms':>7} {'p99 ms':>7} {'records/call':>13} {'vs Orthanc':>11}"
    print(header)
    print("-" * len(header))
    for records in [int(r) for r in query_records.split(",") if r]:
        for r in query_bench(binary, records):
            ratio = f"{ORTHANC_FIND_MS / r['p50_ms']:.1f}x" if ORTHANC_FIND_MS else "-"
            print(f"{records:>8} {r['kind']:18} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['mean_records']:>13.1f} "
                  f"{ratio:>11}")


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
        goal = 500 if r["transport"] == "one-process" else 1000
        verdict = ("met" if r["added_p50_us"] < goal else "MISSED") + (" (0.5 ms)" if goal == 500 else "")
        print(f"{r['transport']:10} {str(r['direct_p50_us']) + '/' + str(r['direct_p99_us']):>18} "
              f"{str(r['bare_proxy_p50_us']) + '/' + str(r['bare_proxy_p99_us']):>19} "
              f"{str(r['gateway_p50_us']) + '/' + str(r['gateway_p99_us']):>19} "
              f"{str(r['added_p50_us']) + '/' + str(r['added_p99_us']):>17} {verdict:>16}")
    print("(bare proxy: the same hop with grpc-swift and no authorization, limits or audit: the floor under the gateway;")
    print(" one-process: TLS to the gateway, then an in-process link, as atrium serve all runs it; goal 0.5 ms)")
    for r in rows:
        if r["phase"] == "auth-cache":
            print(f"authorization cache, {r['clients']} concurrent clients for {r['seconds']} s: {r['calls']} calls "
                  f"({r['calls_per_second']}/s), hit rate {r['hit_rate'] * 100:.2f}% ({r['hits']} hits, {r['misses']} misses)")



def ratio_bench(binary, slices):
    """JPEG-LS size: Atrium's transcoder (CharLS through Swift) against imagecodecs.jpegls_encode (CharLS through
    Python) on the same pixels, for pydicom's real CT and MR slices and three synthetic CT slices."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames
    import imagecodecs

    files = [("CT_small (real CT, 128x128 16-bit signed)", get_testdata_file("CT_small.dcm")),
             ("MR_small (real MR, 64x64 16-bit signed)", get_testdata_file("MR_small.dcm"))]
    synthetic = sorted(f for f in os.listdir(slices) if f.endswith(".dcm"))[:3]
    files += [(f"synthetic CT {name} (512x512 12-bit)", os.path.join(slices, name)) for name in synthetic]
    print()
    print("JPEG-LS lossless size: Atrium (atrium dicom transcode) vs CharLS through Python imagecodecs, same pixels")
    header = f"{'image':44} {'pixel bytes':>11} {'Atrium':>9} {'imagecodecs':>11} {'ratio':>6} {'ref':>6} {'diff':>7} {'within 2%':>9}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as scratch:
        for label, path in files:
            out = os.path.join(scratch, "out.dcm")
            subprocess.run([binary, "dicom", "transcode", path, "-o", out, "--encoding", "jpeg-ls"], check=True,
                           capture_output=True)
            ds = pydicom.dcmread(out)
            ours = sum(len(f) for f in generate_frames(ds.PixelData, number_of_frames=int(getattr(ds, "NumberOfFrames", 1))))
            original = pydicom.dcmread(path)
            pixels = original.pixel_array
            bits = int(original.BitsStored)
            if original.PixelRepresentation == 1:
                pixels = (pixels.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint16)
            reference = len(imagecodecs.jpegls_encode(np.ascontiguousarray(pixels), level=0))
            raw = pixels.size * original.BitsAllocated // 8
            diff = (ours - reference) / reference * 100
            print(f"{label:44} {raw:>11} {ours:>9} {reference:>11} {raw / ours:>6.2f} {raw / reference:>6.2f} "
                  f"{diff:>+6.2f}% {'yes' if abs(diff) <= 2 else 'NO':>9}")


def print_bench(binary, slices):
    """SubmitPrintJob latency through the gateway (release): a 2x3 film box of six 525 kB slices."""
    with Mesh(binary) as mesh:
        printer, _ = mesh.add_subscriber("Bench printer", "printer", "print")
        files = sorted(os.path.join(slices, f) for f in os.listdir(slices) if f.endswith(".dcm"))[:6]
        out = subprocess.run([binary, "bench", "print", "--printer", printer, "--calls", "500"] + files + mesh.client_args(),
                             check=True, capture_output=True, text=True).stdout
        r = [json.loads(line) for line in out.splitlines() if line.startswith("{")][0]
        print()
        print(f"SubmitPrintJob through the gateway, STANDARD\\2,3 of six 525 kB slices, {r['calls']} sequential calls: "
              f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms (goal: under 50 ms: "
              f"{'met' if r['p99_ms'] < 50 else 'MISSED'})")


NETNS = "atrium-bench"


def sh(*command, check=True):
    return subprocess.run(list(command), check=check, capture_output=True, text=True)


def shaped_link(rate="100mbit"):
    """A network namespace joined to this one by a veth pair shaped to `rate` in both directions. Returns the
    teardown function."""
    sh("ip", "netns", "del", NETNS, check=False)
    sh("ip", "link", "del", "atb0", check=False)
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", "atb0", "type", "veth", "peer", "name", "atb1")
    sh("ip", "link", "set", "atb1", "netns", NETNS)
    sh("ip", "addr", "add", "10.77.0.1/30", "dev", "atb0")
    sh("ip", "link", "set", "atb0", "up")
    sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", "10.77.0.2/30", "dev", "atb1")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "atb1", "up")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
    for prefix in ([], ["ip", "netns", "exec", NETNS]):
        device = "atb0" if not prefix else "atb1"
        sh(*prefix, "tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", rate, "burst", "128kb", "latency", "50ms")

    def teardown():
        sh("ip", "netns", "del", NETNS, check=False)
        sh("ip", "link", "del", "atb0", check=False)
    return teardown


def imaging_bench(binary, series_dir, reps="15,5", count=200):
    """AtriumImaging against scipy.ndimage / numpy, both single-threaded, in this run on the same 200 slices."""
    ensure_slices(series_dir, count)
    reps_2d, reps_3d = (int(r) for r in reps.split(","))

    def figures(command, env=None):
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        return {(r["op"], r["shape"]): r for r in (json.loads(l) for l in out.splitlines() if l.startswith("{"))}

    ours = figures([binary, "bench", "imaging", "--dir", series_dir, "--reps-2d", str(reps_2d), "--reps-3d", str(reps_3d)])
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    theirs = figures([sys.executable, os.path.join(HERE, "scipy_baseline.py"), series_dir], env=env)
    plane, stack = "512x512", "200x512x512"
    print()
    print(f"Imaging, single-threaded, the same {count} CT slices in this run: AtriumImaging (`atrium bench imaging`, "
          f"median of {reps_2d}/{reps_3d} runs) vs scipy.ndimage")
    print("(scipy_baseline.py, median of 15/5 runs). Both start from uint16 samples: the cast to float32 is timed. "
          "MPix/s per core; ratio = Atrium / scipy.")
    print("NOTE: Atrium `lines` = max |response| of FOUR 3x3 line masks; the scipy figure is ONE 3x3 convolve (horizontal).")
    header = (f"{'op (Atrium vs scipy)':56} {'shape':12} {'Atrium MPix/s':>13} {'scipy MPix/s':>12} {'ratio':>6} "
              f"{'goal 1.0x':>9} {'scipy ref':>9}")
    print(header)
    print("-" * len(header))
    for atrium_op, scipy_op in IMAGING_PAIRS:
        label = atrium_op if atrium_op == scipy_op else "lines (4 masks) vs scipy line 3x3 (1 mask)"
        for suffix, shape in (("", plane), (" (per-slice)", stack)):
            a = ours.get((atrium_op + suffix, shape))
            b = theirs.get((scipy_op + suffix, shape))
            if not (a and b):
                print(f"{label + suffix:56} {shape:12} {'missing':>13}")
                continue
            ratio = a["MPix_s"] / b["MPix_s"]
            ref = SCIPY_REFERENCE.get(scipy_op) if not suffix else None
            print(f"{label + suffix:56} {shape:12} {a['MPix_s']:>13.1f} {b['MPix_s']:>12.1f} {ratio:>5.2f}x "
                  f"{'met' if ratio >= 1.0 else 'MISSED':>9} {ref if ref else '-':>9}")
    conversion = [ours.get(("convert uint16->Float32 only (Image2D init)" + s, shape)) for s, shape in (("", plane), (" (per-slice)", stack))]
    if all(conversion):
        print(f"(of which the uint16 -> Float32 Image2D conversion alone: {conversion[0]['median_ms']:.2f} ms per slice, "
              f"{conversion[1]['median_ms']:.0f} ms per stack)")
    numpy_mip = theirs.get(("MIP np.max(axis=0) uint16", "200x512x512 -> 512x512"))
    print()
    header = f"{'MIP axis 0, 200x512x512 -> 512x512':56} {'Atrium ms':>10} {'numpy ms':>9} {'ratio':>6} {'goal 1.0x':>9} {'numpy ref':>9}"
    print(header)
    print("-" * len(header))
    for atrium_op in ("MIP StoredProjection.mip uint16 stack", "MIP StoredProjection.mip uint16 slices", "MIP mip(axis: 0) Float32 volume", "MIP mip(axis: 0) incl. uint16->Float32 volume"):
        a = ours.get((atrium_op, "200x512x512 -> 512x512"))
        if not (a and numpy_mip):
            print(f"{atrium_op:56} {'missing':>10}")
            continue
        ratio = numpy_mip["median_ms"] / a["median_ms"]
        print(f"{atrium_op:56} {a['median_ms']:>10.2f} {numpy_mip['median_ms']:>9.2f} {ratio:>5.3f}x "
              f"{'met' if ratio >= 1.0 else 'MISSED':>9} {NUMPY_MIP_REFERENCE_MS:>9.1f}")
    print("(numpy: np.max(axis=0) over the uint16 stack; ratio = numpy ms / Atrium ms. scipy ref: the issue's figures on "
          "an idle machine of this kind, for context only.)")


def cpu_seconds_of_mesh(marker):
    """CPU seconds (user + system) used so far by every process of the mesh."""
    return sum(cpu_seconds(pid) for pid in mesh_processes(marker).values())


def processing_bench(binary, series_dir, count=200, runs=3):
    """A 200-slice smooth job in the one-process mode (one processing instance in the process), then split with one
    processing instance and with two, each instance with one worker: sigma 1.5 (the issue's figure; its 200 results
    are registered, so the registry's durable writes weigh) and sigma 8 (compute-bound). Per job: the wall time from
    Submit to SUCCEEDED, the filters' CPU, and the CPU of every Atrium process during the job and, apart, during the
    download of its 200 results (GetJobResult, 1 MB each, over TLS)."""
    ensure_slices(series_dir, count)
    seconds = {}
    print()
    print(f"Processing jobs over {count} stored 512x512 slices, median of {runs} jobs (each instance with one worker)")
    print(f"  {'mode':26} {'sigma':>5} {'wall s':>7} {'filters CPU s':>14} {'job CPU s':>10} {'x filters':>9} {'download CPU s':>15}  job CPU by process")
    for label, split, instances in (("one process", False, 1), ("split, 1 instance", True, 1), ("split, 2 instances", True, 2)):
        with Mesh(binary, processing=instances, env=["ATRIUM_PROCESSING_WORKERS=1"], split=split) as mesh:
            _, key = mesh.add_subscriber("Bench hospital", "hospital", "register,receive,process")
            # Let the instances find each other (they probe every second) before the first job.
            time.sleep(3)
            watch = ",".join(f"{name}={pid}" for name, pid in sorted(mesh_processes(mesh.data).items()) if name != "up")
            # The inputs' registration (the first call registers them) is not part of any job's figures.
            subprocess.run([binary, "bench", "process", "--dir", series_dir, "--runs", "1", "--sigma", "0.5"] + mesh.client_args(key),
                           check=True, capture_output=True)
            for sigma in (1.5, 8.0):
                done = subprocess.run([binary, "bench", "process", "--dir", series_dir, "--runs", str(runs), "--sigma", str(sigma),
                                       "--watch", watch] + mesh.client_args(key), capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"atrium bench process failed ({label}, sigma {sigma}): {done.stderr.strip()}; see {mesh.data}/log")
                rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
                median = sorted(rows, key=lambda r: r["seconds"])[len(rows) // 2]
                seconds[(label, sigma)] = median["seconds"]
                job_cpu = sum(median["job_cpu"].values())
                download_cpu = sum(median["download_cpu"].values())
                by_process = ", ".join(f"{name} {cpu:.2f}" for name, cpu in sorted(median["job_cpu"].items()) if cpu >= 0.005)
                print(f"  {label:26} {sigma:5.1f} {median['seconds']:7.2f} {median['cpu_seconds']:14.2f} {job_cpu:10.2f} "
                      f"{job_cpu / median['cpu_seconds']:8.1f}x {download_cpu:15.2f}  {by_process}")
    for sigma in (1.5, 8.0):
        speedup = seconds[("split, 1 instance", sigma)] / seconds[("split, 2 instances", sigma)]
        print(f"  speed-up 1 -> 2 instances (split), smooth(sigma={sigma}): {speedup:.2f}x "
              f"(bar 1.3x at sigma 8: {'met' if speedup >= 1.3 else 'MISSED'}; {os.cpu_count()} cores, shared with every other process)")
    print("  job CPU bar: at most 3x the filters' CPU (the job: Submit to SUCCEEDED, results made and registered; the download is apart)")


def link_bench(binary, series_dir, count=200):
    """A 200-slice CT series fetched by a client on the far side of a 100 Mbit/s link, raw vs JPEG-LS."""
    ensure_slices(series_dir, count)
    try:
        teardown = shaped_link()
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        print(f"\n100 Mbit/s link: cannot make a network namespace here ({error}); skipped")
        return
    forwarders = []
    try:
        with Mesh(binary) as mesh:
            subprocess.run([binary, "images", "register", series_dir] + mesh.client_args(), check=True, capture_output=True)
            listing = subprocess.run([binary, "images", "list", "--json", "--limit", "0"] + mesh.client_args(),
                                     check=True, capture_output=True, text=True).stdout
            ids = [json.loads(line)["imageId"] for line in listing.splitlines() if line.strip()]
            # Fill the variant cache first: the link figure is the network's, not the transcoder's.
            subprocess.run([binary, "images", "fetch", *ids, "-o", os.path.join(mesh.data, "warm"), "--encoding", "jpeg-ls"]
                           + mesh.client_args(), check=True, capture_output=True)
            port = mesh.gateway.rsplit(":", 1)[1]
            # The client reaches the gateway through the shaped veth: 127.0.0.1:17443 in the namespace forwards to
            # 10.77.0.1:17443, which forwards to the gateway on this side's loopback (its certificate names 127.0.0.1).
            forwarders.append(subprocess.Popen(["socat", "TCP-LISTEN:17443,bind=10.77.0.1,fork,reuseaddr", f"TCP:127.0.0.1:{port}"]))
            forwarders.append(subprocess.Popen(["ip", "netns", "exec", NETNS, "socat", "TCP-LISTEN:17443,bind=127.0.0.1,fork,reuseaddr",
                                                "TCP:10.77.0.1:17443"]))
            time.sleep(0.5)
            args = mesh.client_args()
            args[args.index("--gateway") + 1] = "127.0.0.1:17443"
            results = {}
            for encoding in ("original", "jpeg-ls"):
                target = os.path.join(mesh.data, f"far-{encoding}")
                started = time.time()
                subprocess.run(["ip", "netns", "exec", NETNS, binary, "images", "fetch", "--via", "grpc", *ids, "-o", target, "--encoding", encoding]
                               + args, check=True, capture_output=True)
                seconds = time.time() - started
                size = sum(os.path.getsize(os.path.join(target, f)) for f in os.listdir(target))
                results[encoding] = (seconds, size)
            print()
            print(f"A {len(ids)}-slice CT series over a link shaped to 100 Mbit/s (veth + tbf), `atrium images fetch` on the far side")
            for encoding, (seconds, size) in results.items():
                print(f"  {encoding:9} {seconds:6.2f} s  {size / 1e6:7.1f} MB  {size * 8 / seconds / 1e6:6.1f} Mbit/s")
            speedup = results["original"][0] / results["jpeg-ls"][0]
            print(f"  JPEG-LS is {speedup:.2f}x faster than raw (goal 3.5x: {'met' if speedup >= 3.5 else 'MISSED'}); "
                  f"bytes {results['original'][1] / results['jpeg-ls'][1]:.2f}x fewer")
    finally:
        for forwarder in forwarders:
            forwarder.kill()
        teardown()


if __name__ == "__main__":
    try:
        main()
    finally:
        for path in LEFTOVERS:
            shutil.rmtree(path, ignore_errors=True)
