#!/usr/bin/env python3
"""Orthanc REST ingest / retrieve / find benchmark (a copy of ../shared/bench/orthanc_baseline.py).

Run INSIDE a private network namespace (see orthanc_baseline.sh) so that
Orthanc can only be reached via loopback.
Usage: orthanc_baseline.py DICOMDIR [RUNS] [WORKDIR]
Prints one JSON line per measurement; summary at the end.
"""
import sys, os, json, time, glob, subprocess, threading, statistics, http.client, shutil

DICOMDIR = sys.argv[1]
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
BASE = sys.argv[3] if len(sys.argv) > 3 else "/tmp/orthanc-baseline"
os.makedirs(BASE, exist_ok=True)
HOST, PORT = "127.0.0.1", 8042
files = sorted(glob.glob(os.path.join(DICOMDIR, "*.dcm")))
blobs = [open(f, "rb").read() for f in files]  # preload: client never touches disk
TOTAL_MB = sum(len(b) for b in blobs) / 1e6
results = []


def log(**kw):
    results.append(kw)
    print(json.dumps(kw), flush=True)


def write_config(dbdir):
    cfg = {
        "Name": "PerfOrthanc",
        "StorageDirectory": dbdir,
        "IndexDirectory": dbdir,
        "StorageCompression": False,
        "MaximumStorageCacheSize": 128,
        "Plugins": [],
        "ConcurrentJobs": 2,
        "HttpServerEnabled": True,
        "HttpPort": PORT,
        "HttpDescribeErrors": True,
        "HttpCompressionEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": "PERFORTHANC",
        "DicomPort": 4242,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "KeepAlive": True,
        "TcpNoDelay": True,
        "HttpThreadsCount": 50,
        "SaveJobs": False,
        "OverwriteInstances": False,
        "StorageAccessOnFind": "Always",
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
    }
    path = os.path.join(BASE, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path


def start_orthanc(tag):
    dbdir = os.path.join(BASE, "db-" + tag)
    shutil.rmtree(dbdir, ignore_errors=True)
    os.makedirs(dbdir)
    cfg = write_config(dbdir)
    logf = open(os.path.join(BASE, f"orthanc-{tag}.log"), "w")
    p = subprocess.Popen(["/usr/sbin/Orthanc", cfg], stdout=logf, stderr=subprocess.STDOUT)
    last = None
    for _ in range(200):
        try:
            c = http.client.HTTPConnection(HOST, PORT, timeout=2)
            c.request("GET", "/system")
            r = c.getresponse(); r.read()
            if r.status == 200:
                if tag.startswith("c1r0"):
                    print(subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout, flush=True)
                return p, dbdir
        except OSError as error:
            last = error
        time.sleep(0.05)
    raise RuntimeError(f"Orthanc did not start: {last!r}")


def stop_orthanc(p, dbdir):
    p.terminate()  # by PID only
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
    # The storage stays until the caller removes BASE: deleting it here would make the next run's file creation
    # dearer (ext4 skips inodes freed in the last minutes), which is the harness's cost, not the server's.


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parallel(nclients, items, fn):
    """Split items round-robin over nclients threads, each with its own keep-alive conn."""
    out = [None] * len(items)
    err = []

    def worker(k):
        c = http.client.HTTPConnection(HOST, PORT, timeout=60)
        try:
            for i in range(k, len(items), nclients):
                out[i] = fn(c, items[i])
        except Exception as e:  # noqa
            err.append(repr(e))
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(nclients)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    dt = time.perf_counter() - t0
    if err:
        raise RuntimeError(err[0])
    return dt, out


def post_instance(c, blob):
    c.request("POST", "/instances", body=blob, headers={"Content-Type": "application/dicom"})
    r = c.getresponse(); body = r.read()
    assert r.status == 200, (r.status, body[:200])
    j = json.loads(body)
    assert j["Status"] == "Success", j
    return j["ID"]


def get_file(c, iid):
    c.request("GET", f"/instances/{iid}/file")
    r = c.getresponse(); body = r.read()
    assert r.status == 200
    return len(body)


def find(query, expand=False, level="Instance"):
    c = http.client.HTTPConnection(HOST, PORT, timeout=60)
    body = json.dumps({"Level": level, "Query": query, "Expand": expand})
    t0 = time.perf_counter()
    c.request("POST", "/tools/find", body=body)
    r = c.getresponse(); data = r.read()
    dt = time.perf_counter() - t0
    assert r.status == 200, data[:200]
    return dt, len(json.loads(data))


summary = {}
for nclients in (1, 4):
    for run in range(RUNS):
        p, dbdir = start_orthanc(f"c{nclients}r{run}")
        cpu0 = cpu_seconds(p.pid); pc0 = time.process_time()
        dt, ids = parallel(nclients, blobs, post_instance)
        cpu1 = cpu_seconds(p.pid); pc1 = time.process_time()
        log(op="ingest", clients=nclients, run=run, n=len(blobs), seconds=round(dt, 3),
            img_s=round(len(blobs) / dt, 1), MB_s=round(TOTAL_MB / dt, 1),
            orthanc_cpu_ms_per_img=round(1000 * (cpu1 - cpu0) / len(blobs), 2),
            client_cpu_ms_per_img=round(1000 * (pc1 - pc0) / len(blobs), 2))
        summary.setdefault(("ingest", nclients), []).append(len(blobs) / dt)
        if nclients == 4 and run == RUNS - 1:
            # retrieval + find on this fully populated DB
            for rc in (1, 4):
                for rr in range(RUNS):
                    c0 = cpu_seconds(p.pid); q0 = time.process_time()
                    dt, sizes = parallel(rc, ids, get_file)
                    c1 = cpu_seconds(p.pid); q1 = time.process_time()
                    mb = sum(sizes) / 1e6
                    log(op="retrieve", clients=rc, run=rr, n=len(ids), seconds=round(dt, 3),
                        img_s=round(len(ids) / dt, 1), MB_s=round(mb / dt, 1),
                        orthanc_cpu_ms_per_img=round(1000 * (c1 - c0) / len(ids), 2),
                        client_cpu_ms_per_img=round(1000 * (q1 - q0) / len(ids), 2))
                    summary.setdefault(("retrieve", rc), []).append(len(ids) / dt)
            for label, q, exp, lvl in [
                ("find PatientID (instance level, ids only)", {"PatientID": "PAT0003"}, False, "Instance"),
                ("find PatientID (instance level, Expand)", {"PatientID": "PAT0003"}, True, "Instance"),
                ("find PatientID (study level, Expand)", {"PatientID": "PAT0003"}, True, "Study"),
                ("find PatientID wildcard PAT* (instance, ids only)", {"PatientID": "PAT*"}, False, "Instance"),
                ("find non-main tag KVP=120.0 (instance, ids only)", {"KVP": "120.0"}, False, "Instance"),
            ]:
                ts = []
                for _ in range(11 if "KVP" not in label else 3):
                    d, n = find(q, exp, lvl)
                    ts.append(d)
                log(op="find", what=label, matches=n, median_ms=round(1000 * statistics.median(ts), 2),
                    min_ms=round(1000 * min(ts), 2), max_ms=round(1000 * max(ts), 2), reps=len(ts))
        stop_orthanc(p, dbdir)

print("SUMMARY (median images/s, MB/s):")
for (op, nc), v in summary.items():
    m = statistics.median(v)
    print(f"  {op:8s} clients={nc}: {m:7.1f} img/s  {m * TOTAL_MB / len(blobs):7.1f} MB/s  runs={[round(x,1) for x in v]}")
print(f"  avg file size: {TOTAL_MB / len(blobs) * 1e3:.1f} kB")
