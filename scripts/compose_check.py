#!/usr/bin/env python3
"""Statically validate compose/compose.yaml (there is no Docker engine in CI).

Usage:
    python3 scripts/compose_check.py [COMPOSE_FILE [SCHEMA_FILE]]

Defaults:
    COMPOSE_FILE  <repo>/compose/compose.yaml
    SCHEMA_FILE   $ATRIUM_COMPOSE_SCHEMA, else <repo>/../shared/schemas/compose-spec.json

Two passes:
  1. The Compose Specification JSON schema (draft-07), applied after YAML merge
     keys (`<<:`) have been resolved, which yaml.safe_load does.
  2. Atrium rules the schema cannot express: depends_on targets exist, named
     volumes are declared, long-running services have health checks,
     processing runs at least two replicas, only the gateway publishes ports (and delivery its data plane),
     `atrium serve X` names a known service, and each health check probes the
     service's own ATRIUM_PORT.

Prints every problem with its path and exits 1 if there are any.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

try:
    import yaml
    from jsonschema import Draft7Validator
except ImportError as error:  # pragma: no cover - environment problem
    sys.exit(f"compose-check: missing Python package ({error}); pip install pyyaml jsonschema")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_COMPOSE = REPO / "compose" / "compose.yaml"
DEFAULT_SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"

ATRIUM_SERVICES = {"gateway", "security", "registry", "delivery", "processing", "catalog", "backup"}
# Services that are not long-running Atrium processes: no health check required.
NO_HEALTHCHECK_REQUIRED = {"pki", "postgres"}
PUBLISHING_SERVICES = {"gateway"}
# Delivery publishes its data plane (HTTPS for AuthorizeFetch's capabilities), never its gRPC port.
# Delivery and the registry publish their data planes (HTTPS for AuthorizeFetch's and AuthorizeUpload's
# capabilities), never their gRPC ports.
DATA_PLANES = {"delivery": "ATRIUM_DELIVERY_BYTES_PORT", "registry": "ATRIUM_REGISTRY_UPLOAD_PORT"}
MIN_PROCESSING_REPLICAS = 2


def fmt_path(parts) -> str:
    """Render a JSON path like services.gateway.ports[0]."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def schema_errors(document, schema) -> list[str]:
    validator = Draft7Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{fmt_path(e.absolute_path)}: {e.message}" for e in errors]


def command_argv(command) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(arg) for arg in command]


def depends_on_targets(depends_on) -> list[str]:
    if depends_on is None:
        return []
    if isinstance(depends_on, dict):
        return list(depends_on)
    return [str(name) for name in depends_on]


def named_volumes_used(volumes) -> list[tuple[int, str]]:
    """Named volume sources of a service's `volumes:` (short or long syntax)."""
    used = []
    for index, entry in enumerate(volumes or []):
        if isinstance(entry, str):
            source = entry.split(":", 1)[0] if ":" in entry else ""
            # Bind mounts start with '.', '/', '~' or a variable; anonymous volumes have no source.
            if source and not source.startswith((".", "/", "~", "$")):
                used.append((index, source))
        elif isinstance(entry, dict):
            if entry.get("type", "volume") == "volume" and entry.get("source"):
                used.append((index, entry["source"]))
    return used


def environment_map(environment) -> dict[str, str]:
    if isinstance(environment, dict):
        return {str(k): "" if v is None else str(v) for k, v in environment.items()}
    result = {}
    for item in environment or []:
        key, _, value = str(item).partition("=")
        result[key] = value
    return result


def atrium_rules(document) -> list[str]:
    problems: list[str] = []
    services = document.get("services") or {}
    declared_volumes = set((document.get("volumes") or {}).keys())
    declared_secrets = set((document.get("secrets") or {}).keys())

    for name, service in services.items():
        if not isinstance(service, dict):
            continue  # the schema pass reports this
        where = f"services.{name}"

        for target in depends_on_targets(service.get("depends_on")):
            if target not in services:
                problems.append(f"{where}.depends_on: unknown service {target!r}")

        for index, volume in named_volumes_used(service.get("volumes")):
            if volume not in declared_volumes:
                problems.append(f"{where}.volumes[{index}]: named volume {volume!r} is not declared under top-level volumes")

        for index, secret in enumerate(service.get("secrets") or []):
            source = secret.get("source") if isinstance(secret, dict) else secret
            if source not in declared_secrets:
                problems.append(f"{where}.secrets[{index}]: secret {source!r} is not declared under top-level secrets")

        if name not in NO_HEALTHCHECK_REQUIRED:
            healthcheck = service.get("healthcheck")
            if not healthcheck or healthcheck.get("disable") or not healthcheck.get("test"):
                problems.append(f"{where}.healthcheck: long-running service has no health check")

        if service.get("ports") and name in DATA_PLANES:
            key = DATA_PLANES[name]
            data_port = str((service.get("environment") or {}).get(key, ""))
            for index, port in enumerate(service["ports"]):
                target = str(port.get("target") if isinstance(port, dict) else str(port).split(":")[-1].split("/")[0])
                if not data_port or target != data_port:
                    problems.append(f"{where}.ports[{index}]: {name} may publish only its data plane ({key})")
        elif service.get("ports") and name not in PUBLISHING_SERVICES:
            problems.append(f"{where}.ports: only {sorted(PUBLISHING_SERVICES)} (and the data planes) may publish ports")

        argv = command_argv(service.get("command"))
        for index, arg in enumerate(argv):
            if arg == "serve":
                target = argv[index + 1] if index + 1 < len(argv) else None
                if target not in ATRIUM_SERVICES:
                    problems.append(
                        f"{where}.command: `atrium serve {target or ''}` is not a known service "
                        f"(expected one of {' '.join(sorted(ATRIUM_SERVICES))})"
                    )
                break

        # The health check must probe the port the service actually listens on.
        port = environment_map(service.get("environment")).get("ATRIUM_PORT")
        test = (service.get("healthcheck") or {}).get("test")
        if port and isinstance(test, list) and "health" in test:
            probed = str(test[-1]).rsplit(":", 1)[-1]
            if probed != port:
                problems.append(f"{where}.healthcheck.test: probes port {probed} but ATRIUM_PORT is {port}")

    processing = services.get("processing")
    if not isinstance(processing, dict):
        problems.append("services.processing: missing")
    else:
        replicas = (processing.get("deploy") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < MIN_PROCESSING_REPLICAS:
            problems.append(f"services.processing.deploy.replicas: must be >= {MIN_PROCESSING_REPLICAS} (got {replicas!r})")

    return problems


def main(argv: list[str]) -> int:
    compose_path = Path(argv[1]) if len(argv) > 1 else DEFAULT_COMPOSE
    if len(argv) > 2:
        schema_path = Path(argv[2])
    elif os.environ.get("ATRIUM_COMPOSE_SCHEMA"):
        schema_path = Path(os.environ["ATRIUM_COMPOSE_SCHEMA"])
    else:
        schema_path = DEFAULT_SCHEMA

    try:
        display = compose_path.resolve().relative_to(REPO)
    except ValueError:
        display = compose_path

    try:
        with open(compose_path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)  # resolves `<<:` merge keys
    except (OSError, yaml.YAMLError) as error:
        print(f"compose-check: cannot read {display}: {error}", file=sys.stderr)
        return 1
    try:
        with open(schema_path, encoding="utf-8") as handle:
            schema = yaml.safe_load(handle)  # JSON is YAML
    except (OSError, yaml.YAMLError) as error:
        print(f"compose-check: cannot read schema {schema_path}: {error}", file=sys.stderr)
        return 1

    if not isinstance(document, dict):
        print(f"compose-check: {display}: top level must be a mapping", file=sys.stderr)
        return 1

    problems = [f"schema: {p}" for p in schema_errors(document, schema)]
    problems += [f"atrium: {p}" for p in atrium_rules(document)]

    if problems:
        for problem in problems:
            print(f"compose-check: {display}: {problem}", file=sys.stderr)
        print(f"compose-check: {display} is INVALID ({len(problems)} problem(s))", file=sys.stderr)
        return 1

    print(f"compose-check: {display} is valid ({len(document.get('services') or {})} services)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
