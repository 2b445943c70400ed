#!/usr/bin/env python3
"""What writing a new file costs on this machine, by where its page-cache pages come from.

Writes N files of SIZE bytes (a CT slice) with fsync, three ways, and prints the CPU (user + system) per file:
  new pages     through the page cache, after the previous files stay cached (pages taken from free memory)
  reused pages  through the page cache, right after deleting as many files (their pages are handed out again)
  O_DIRECT      around the page cache (padded to 4 KiB, then truncated)
On a VM whose free memory has not been touched since boot, the first costs several times the others: every store
of a blob pays it, Orthanc's and Atrium's alike. Run at the end of `make bench` (part `pagecache`)."""
import mmap, os, resource, shutil, sys, time

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def write_files(directory, count, size, direct):
    data = os.urandom(size)
    padded = (size + 4095) // 4096 * 4096
    aligned = mmap.mmap(-1, padded)
    aligned[:size] = data
    start_cpu, start = cpu(), time.perf_counter()
    for index in range(count):
        path = os.path.join(directory, f"{'d' if direct else 'b'}{index}-{time.time_ns()}")
        if direct:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
            os.write(fd, aligned)
            os.ftruncate(fd, size)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
    return 1000 * (cpu() - start_cpu) / count, 1000 * (time.perf_counter() - start) / count

def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "var/bench/pagecache"
    count, size = 300, 525_000
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    try:
        rows = [("new pages", *write_files(directory, count, size, False))]
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        rows.append(("reused pages", *write_files(directory, count, size, False)))
        try:
            rows.append(("O_DIRECT", *write_files(directory, count, size, True)))
        except OSError as error:
            rows.append((f"O_DIRECT (not here: {error.strerror})", float("nan"), float("nan")))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"Writing a new {size // 1000} kB file with fsync, {count} files each way (bench/page_cache.py):")
    for name, cpu_ms, wall_ms in rows:
        print(f"  {name:14} CPU {cpu_ms:5.2f} ms/file   wall {wall_ms:5.2f} ms/file")

if __name__ == "__main__":
    main()
