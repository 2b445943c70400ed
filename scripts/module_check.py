#!/usr/bin/env python3
"""Checks Atrium's module graph against the rules in docs/architecture.md ("Modules").

Reads the resolved target graph from `swift package describe --type json` (or a file given as the first
argument), follows every first-party target's dependencies transitively, and fails with the offending path
when a module reaches something it must not:

- the SDK (`AtriumClient`) reaches only the API, core and transport modules: no database (GRDB, SQLite,
  `AtriumStorage`), no service lifecycle, no runtime or service module;
- `AtriumTransport` (the SDK's piece of the runtime) has no database and no service lifecycle;
- `AtriumRuntime` holds process bootstrap only: no database, no backend plumbing, no launcher;
- the DICOM and imaging libraries have no gRPC;
- no service module imports another service module (they talk through the generated client protocols);
- processing's engine (`Sources/AtriumProcessing/Engine`) imports no gRPC, runtime or storage module: it
  reads operations as protobuf messages and throws its own `EngineError`, which the service maps to a status.

It also checks the source files: an SDK file that imports a forbidden module fails even if the manifest does
not declare it, and a dependency a Swift target declares but none of its files imports fails too (it only
lengthens the build and blurs the graph). Exit status 0 when every rule holds.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DATABASE = {"GRDB", "AtriumStorage"}
LIFECYCLE = {"ServiceLifecycle", "UnixSignals"}
GRPC = {"GRPCCore", "GRPCNIOTransportHTTP2", "GRPCInProcessTransport", "GRPCProtobuf", "AtriumAPI"}
SERVICES = {"AtriumSecurity", "AtriumRegistry", "AtriumDelivery", "AtriumProcessing", "AtriumCatalog", "AtriumBackup", "AtriumGateway"}

# module -> (what it must not reach, why)
RULES = {
    "AtriumClient": (DATABASE | LIFECYCLE | SERVICES | {"AtriumRuntime", "AtriumBackend", "AtriumPool", "AtriumAssembly"},
                     "the SDK depends on the API, core and transport only"),
    "AtriumTransport": (DATABASE | LIFECYCLE | {"AtriumRuntime", "AtriumAPI"}, "the SDK's piece of the runtime"),
    "AtriumRuntime": (DATABASE | {"AtriumBackend", "AtriumPool", "AtriumAssembly"}, "the runtime holds only process bootstrap"),
    "AtriumDICOM": (GRPC | DATABASE, "the DICOM library is pure"),
    "AtriumImaging": (GRPC | DATABASE | {"AtriumDICOM"}, "the imaging engine is pure"),
}
for service in SERVICES:
    RULES.setdefault(service, (SERVICES - {service}, "services talk through the generated client protocols"))

# What an SDK source file may import.
SDK_IMPORTS_FORBIDDEN = DATABASE | LIFECYCLE | {"SQLite3", "AtriumRuntime", "AtriumBackend"}

# Folders whose files must not import these modules, and why.
FOLDER_RULES = {
    "Sources/AtriumProcessing/Engine": (
        (GRPC - {"AtriumAPI"}) | DATABASE | {"AtriumRuntime", "AtriumBackend", "AtriumPool", "AtriumTransport"},
        "processing's engine is free of gRPC and storage",
    ),
}


def describe(argv):
    if len(argv) > 1:
        return json.loads(Path(argv[1]).read_text())
    out = subprocess.run(["swift", "package", "describe", "--type", "json"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])


def main(argv):
    package = describe(argv)
    targets = {t["name"]: t for t in package["targets"]}

    def edges(name):
        target = targets.get(name)
        if target is None:
            return []
        return list(target.get("target_dependencies", [])) + list(target.get("product_dependencies", []))

    def reach(start):
        """Every module reachable from `start`, with the path that first reached it."""
        paths = {start: [start]}
        queue = [start]
        while queue:
            name = queue.pop(0)
            for dependency in edges(name):
                if dependency not in paths:
                    paths[dependency] = paths[name] + [dependency]
                    queue.append(dependency)
        return paths

    failures = []
    for module, (forbidden, why) in sorted(RULES.items()):
        if module not in targets:
            failures.append(f"{module}: no such target (update scripts/module_check.py)")
            continue
        paths = reach(module)
        for bad in sorted(forbidden & paths.keys()):
            failures.append(f"{module} reaches {bad} ({' -> '.join(paths[bad])}): {why}")

    import_line = re.compile(r"^\s*(?:@\w+\s+)*(?:public |package |internal )?import\s+(\w+)", re.M)
    for source in sorted((ROOT / "Sources" / "AtriumClient").glob("**/*.swift")):
        for imported in import_line.findall(source.read_text()):
            if imported in SDK_IMPORTS_FORBIDDEN:
                failures.append(f"{source.relative_to(ROOT)} imports {imported}: the SDK must not")
    for folder, (forbidden, why) in FOLDER_RULES.items():
        sources = sorted((ROOT / folder).glob("**/*.swift"))
        if not sources:
            failures.append(f"{folder}: no Swift files (update scripts/module_check.py)")
        for source in sources:
            for imported in import_line.findall(source.read_text()):
                if imported in forbidden:
                    failures.append(f"{source.relative_to(ROOT)} imports {imported}: {why}")

    for name, target in sorted(targets.items()):
        if target.get("module_type") != "SwiftTarget":
            continue
        imports = set()
        for source in (ROOT / target["path"]).glob("**/*.swift"):
            imports.update(import_line.findall(source.read_text()))
        for dependency in list(target.get("target_dependencies", [])) + list(target.get("product_dependencies", [])):
            if dependency not in imports:
                failures.append(f"{name} declares {dependency} but none of its files imports it")

    sdk = sorted(m for m in reach("AtriumClient") if m in targets and m != "AtriumClient")
    print(f"module-check: {len(RULES)} rules over {len(targets)} targets; the SDK reaches {', '.join(sdk)}")
    # Not ours to fix: grpc-swift-nio-transport's Posix transport links swift-nio-extras' certificate reloading,
    # which declares swift-service-lifecycle. Say so when it is still the case, so nobody is surprised by the
    # package in the SDK's resolved packages.
    upstream = ROOT / ".build" / "checkouts" / "grpc-swift-nio-transport" / "Package.swift"
    if upstream.exists() and "NIOCertificateReloading" in upstream.read_text():
        print("module-check: note: GRPCNIOTransportHTTP2 links NIOCertificateReloading (swift-nio-extras), which "
              "declares ServiceLifecycle; the SDK's own modules neither declare nor import it")
    for failure in failures:
        print(f"module-check: FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
