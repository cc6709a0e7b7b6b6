"""Benchmark: ``provision --all`` (one vault session) against a per-tenant loop, for 1, 10, 50 tenants.

Runs the REAL bw CLI (tests/tools, pinned) against the Vaultwarden-compatible test server on
loopback, with colibri's own SecretsService and Bitwarden adapter, and counts the bw processes
each way.  Usage:  .venv/bin/python -m bench.provision [--sizes 1,10,50] [--json out.json]
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from colibri.adapters.bitwarden import Bitwarden, BwConfig
from colibri.adapters.credentials import OperatorCredentials
from colibri.adapters.runner import ShRunner
from colibri.services.secrets import SecretsConfig, SecretsService
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Tenant
from tests.servers.vaultwarden import start
from tests.servers.vaultwarden.bwcli import find_bw

PASSWORD = "bench master password"


class FixedCredentials:
    def __init__(self, creds: OperatorCredentials) -> None:
        self._creds = creds

    def load(self) -> OperatorCredentials:
        return self._creds


def make_jail(jails: Path, tenant: str) -> Path:
    root = jails / tenant / "root"
    (root / "home" / "agent").mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text(f"agent:*:{os.geteuid()}:{os.getegid()}::/home/agent:/bin/sh\n")
    return root


def make_store(base: Path, tenants: list[str], jails: Path) -> Store:
    store = Store(f"sqlite:///{base / 'colibri.db'}")
    service = TenantService(store, "bench")
    for tenant in tenants:
        service.register(tenant, None, None)
        with store.session() as session:
            row = session.get(Tenant, tenant)
            assert row is not None
            row.backend, row.jail_root = "sandbox", str(make_jail(jails, tenant))
    return store


def clear_envs(jails: Path) -> None:
    for env in jails.glob("*/root/home/agent/.env"):
        env.unlink()


def measure(label: str, bw: Bitwarden, jails: Path, action: object) -> dict[str, float | int | str]:
    clear_envs(jails)
    before = bw.calls
    started = time.monotonic()
    results = action()  # type: ignore[operator]
    seconds = time.monotonic() - started
    outcomes = [r.outcome for r in results]
    assert all(o == "written" for o in outcomes), outcomes
    return {"mode": label, "seconds": round(seconds, 2), "bw_processes": bw.calls - before}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    bw_bin = find_bw()
    if bw_bin is None:
        print("bw is not installed: bash tests/setup.sh", file=sys.stderr)
        return 2
    server = start()
    base = Path(tempfile.mkdtemp(prefix="colibri-bench-"))
    try:
        operator = server.vault.add_user("bench@example.org", PASSWORD)
        org = server.vault.add_org("Bench", owner=operator)
        names = [f"t{i:03d}" for i in range(max(sizes))]
        for name in names:
            col = server.vault.add_collection(org, name)
            server.vault.add_item(col, "env", fields={"API_KEY": f"sk-{name}", "REGION": "eu"}, notes="MODEL=x\n")
        creds = OperatorCredentials(
            SecretStr(operator.client_id), SecretStr(operator.client_secret), SecretStr(PASSWORD)
        )
        config = BwConfig(str(bw_bin), base / "bw", server.url, org.id, server.ca_cert_path, 120.0)
        bw = Bitwarden(ShRunner({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}), config)
        started = time.monotonic()
        bw.login(creds)
        login_s = time.monotonic() - started
        jails = base / "jails"
        rows = []
        for size in sizes:
            folder = base / f"db{size}"
            folder.mkdir()
            store = make_store(folder, names[:size], jails)
            secrets_config = SecretsConfig("bench", "agent", base / "staged", (jails,), org.id)
            service = SecretsService(store, secrets_config, bw, FixedCredentials(creds))
            batch = measure("provision --all", bw, jails, service.provision_all)
            loop = measure("per-tenant loop", bw, jails, lambda s=service, n=size: [s.provision(t) for t in names[:n]])
            store.close()
            for row in (batch, loop):
                rows.append({"tenants": size, **row})
                print(json.dumps(rows[-1]), flush=True)
        report = {
            "bw_version": "2026.9.0",
            "login_seconds": round(login_s, 2),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "rows": rows,
        }
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
