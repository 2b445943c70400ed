#!/usr/bin/env python3
"""The machine's ceiling for serving these files over TLS: nginx (Debian) serving the slices read-only over HTTPS
(TLS 1.3, HTTP/1.1 keep-alive) to N curl processes, each fetching its share of the files in one connection into
/dev/null. Neither side hashes or parses: it is what TLS on both ends of this machine's cores costs, the reference
under which the byte path's figure should be read. The same over plain HTTP for comparison.

Usage: tls_ceiling.py DICOMDIR [--clients 1,4]
Prints one JSON object per (scheme, clients).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--clients", default="1,4")
    args = parser.parse_args()
    files = sorted(f for f in os.listdir(args.dir) if f.endswith(".dcm"))
    size = sum(os.path.getsize(os.path.join(args.dir, f)) for f in files)
    work = tempfile.mkdtemp(prefix="tls-ceiling-")
    try:
        key, cert = os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        tls_port, plain_port = free_port(), free_port()
        config = os.path.join(work, "nginx.conf")
        with open(config, "w") as out:
            out.write(f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        root {os.path.abspath(args.dir)};
    }}
    server {{
        listen 127.0.0.1:{plain_port};
        root {os.path.abspath(args.dir)};
    }}
}}
""")
        nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", config], stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            for scheme, port in (("https", tls_port), ("http", plain_port)):
                for clients in [int(c) for c in args.clients.split(",")]:
                    started = time.perf_counter()
                    processes = []
                    for k in range(clients):
                        command = ["curl", "-sS", "--cacert", cert, "--fail"]
                        for name in files[k::clients]:
                            command += [f"{scheme}://127.0.0.1:{port}/{name}", "-o", "/dev/null"]
                        processes.append(subprocess.Popen(command))
                    codes = [p.wait() for p in processes]
                    seconds = time.perf_counter() - started
                    if any(codes):
                        raise SystemExit(f"curl failed: {codes}")
                    print(json.dumps({"server": "nginx", "scheme": scheme, "clients": clients, "images": len(files),
                                      "images_per_s": round(len(files) / seconds, 1),
                                      "mb_per_s": round(size / 1e6 / seconds, 1)}), flush=True)
        finally:
            nginx.terminate()
            nginx.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
