#!/usr/bin/env python3
"""CI's check of docker-compose.yml where `docker compose config` cannot run: the file parses, and has the shape
the README promises (ferry built here, on PostgreSQL and Redis that are healthy first, data in named volumes)."""
import sys

import yaml

def fail(message):
    print(f"docker-compose.yml: {message}", file=sys.stderr)
    sys.exit(1)

with open(sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml") as f:
    doc = yaml.safe_load(f)
allowed_top = {"services", "volumes", "networks", "configs", "secrets", "name"}
if not isinstance(doc, dict) or set(doc) - allowed_top:
    fail(f"top-level keys must be among {sorted(allowed_top)}")
services = doc.get("services") or {}
for name in ("ferry", "postgres", "redis"):
    if name not in services:
        fail(f"service {name} is missing")
allowed_service = {"image", "build", "command", "environment", "ports", "volumes", "depends_on", "healthcheck",
                   "restart", "user", "entrypoint"}
for name, service in services.items():
    if set(service) - allowed_service:
        fail(f"service {name} has unknown keys {sorted(set(service) - allowed_service)}")
    if "image" not in service and "build" not in service:
        fail(f"service {name} has neither image nor build")
    for port in service.get("ports", []):
        if not isinstance(port, str) or port.count(":") != 1:
            fail(f"service {name}: port {port!r} is not HOST:CONTAINER")
ferry = services["ferry"]
if ferry.get("build") != ".":
    fail("ferry must be built from this directory's Dockerfile")
env = ferry.get("environment") or {}
for key in ("FERRY_DATABASE_URL", "FERRY_REDIS_URL", "FERRY_BIND", "FERRY_SECRET_KEY", "FERRY_PUBLIC_URL"):
    if key not in env:
        fail(f"ferry's environment lacks {key}")
if not str(env["FERRY_DATABASE_URL"]).startswith("postgres://") or "@postgres:" not in env["FERRY_DATABASE_URL"]:
    fail("ferry must use the postgres service")
if not str(env["FERRY_REDIS_URL"]).startswith("redis://redis:"):
    fail("ferry must use the redis service")
for dep in ("postgres", "redis"):
    if (ferry.get("depends_on") or {}).get(dep, {}).get("condition") != "service_healthy":
        fail(f"ferry must wait for {dep} to be healthy")
    if "healthcheck" not in services[dep]:
        fail(f"{dep} needs a healthcheck")
volumes = set(doc.get("volumes") or {})
for name, service in services.items():
    for mount in service.get("volumes", []):
        source = mount.split(":", 1)[0]
        if not source.startswith((".", "/")) and source not in volumes:
            fail(f"service {name} mounts undeclared volume {source}")
if not any(m.endswith(":/var/lib/ferry") for m in ferry.get("volumes", [])):
    fail("ferry's data directory /var/lib/ferry must be a volume")
print("docker-compose.yml: ferry on PostgreSQL and Redis, as documented")
