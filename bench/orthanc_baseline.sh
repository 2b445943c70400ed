#!/bin/bash
# Side-by-side reference: Orthanc (Debian package) ingest / retrieve / find over its REST API,
# on the same DICOM files as our own benchmark. Orthanc 1.10 cannot bind to loopback only, so it
# runs inside a private network namespace whose only interface is 'lo'.
# A copy of ../shared/bench/orthanc_baseline.sh; bench/run_bench.py runs it in the same invocation as Atrium, on the
# same files, and takes its ratios from that run.
# Usage: orthanc_baseline.sh DICOMDIR [RUNS] [WORKDIR]
# Make the files first, e.g.: python3 gen_ct_dicom.py /tmp/ct1000 1000   (needs: pip install pydicom numpy)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v Orthanc >/dev/null || [ -x /usr/sbin/Orthanc ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc >/dev/null; }
exec unshare -n bash -c 'ip link set lo up && python3 "$0" "$1" "$2" "$3"' "$here/orthanc_baseline.py" "$1" "${2:-3}" "${3:-/tmp/orthanc-baseline}"
