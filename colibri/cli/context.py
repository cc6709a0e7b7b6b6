"""The composition root: settings → store → adapters → services, built lazily on first use.

Nothing heavy is imported until a command needs it, so ``colibri --help`` stays fast.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from colibri.cli import daemon_nudge, skill_wiring

if TYPE_CHECKING:
    from colibri.adapters.bitwarden import Bitwarden
    from colibri.adapters.daemon_client import DaemonClient
    from colibri.adapters.jail import JailBackend
    from colibri.adapters.localhome import LocalHome
    from colibri.adapters.ssh import SshHosts
    from colibri.services.audit.signer import AuditSigner
    from colibri.services.hosts.enrol import HostService
    from colibri.services.hosts.remote_ops import Op, ServingHost
    from colibri.services.lifecycle.operations import AgentService
    from colibri.services.lifecycle.pipeline import Provisioned, SpawnService
    from colibri.services.lifecycle.placement import HostReach, LinkFactory, Placement
    from colibri.services.lifecycle.reconcile import Reconciler
    from colibri.services.lifecycle.remote_host import HostLink
    from colibri.services.lifecycle.routing import Lifecycle
    from colibri.services.secrets import SecretsService
    from colibri.services.secrets_vault import VaultService
    from colibri.services.secrets_write import EnvWriter
    from colibri.services.tenants import TenantService
    from colibri.settings import Settings
    from colibri.store.db import Store
    from colibri.store.orchestrator import OrchestratorRecord


@dataclass
class Adapters:
    """Adapters handed to the context instead of the real ones (``colibri.cli.app.run(argv,
    adapters=...)``): the seam the unit tests put their fakes in (tests/fakes).  None: the real
    one, built from the settings."""

    jail_backend: "JailBackend | None" = None
    local_home: "Callable[[Path], LocalHome] | None" = None
    """How spawn-local, stop and destroy reach a home; None: colibri.adapters.localhome.LocalHome."""
    host_links: "LinkFactory | None" = None
    """How the orchestrator reaches another host (tests: tests/fakes/hostlink.py); None: SSH
    (colibri.adapters.ssh), imported only when a command meets a tenant of another host."""


@dataclass
class Context:
    config_path: Path | None = None
    debug: bool = False
    adapters: Adapters = field(default_factory=Adapters)
    _settings: "Settings | None" = None
    _sources: dict[str, str] = field(default_factory=dict)
    _store: "Store | None" = None
    _ssh: "SshHosts | None" = None
    _lifecycle: "Lifecycle | None" = None
    _audit_head: int | None = None

    @property
    def settings(self) -> "Settings":
        if self._settings is None:
            from colibri.settings import load_settings

            self._settings, self._sources = load_settings(self.config_path)
        return self._settings

    @property
    def sources(self) -> dict[str, str]:
        _ = self.settings
        return self._sources

    @property
    def store(self) -> "Store":
        if self._store is None:
            from colibri.audit import origin
            from colibri.cli.entry_key import vouch
            from colibri.store.db import Store

            self._store = Store(self.settings.database, self.settings.database_timeout)
            origin.set_origin(self.settings.host, origin.operator_actor(), vouch(self.settings))  # its MAC key
            self._audit_head = self._head()
        return self._store

    def tenants(self) -> "TenantService":
        from colibri.services.tenants import TenantService

        return TenantService(
            self.store,
            self.settings.host,
            destroy_jail=lambda t: self.lifecycle().destroy(t),
            locks_dir=self.settings.run_dir / "locks",
            record=self.record(),
        )

    def record(self) -> "OrchestratorRecord":
        """This host's own record of where tenants live and how hosts are reached (the authority
        over where secrets go; the shared database's rows must agree with it)."""
        from colibri.store.orchestrator import OrchestratorRecord

        return OrchestratorRecord(self.settings.state_dir, self.settings.host)

    def backend(self) -> "JailBackend":
        """The jail backend: the injected one, else the one the jail_backend setting names."""
        if self.adapters.jail_backend is None:
            from colibri.adapters.backends import make_backend

            return make_backend(self.settings)
        return self.adapters.jail_backend

    def _local_home(self) -> "Callable[[Path], LocalHome]":
        if self.adapters.local_home is None:
            from colibri.adapters.localhome import LocalHome

            return LocalHome
        return self.adapters.local_home

    def spawner(self, provision: "Callable[[str], Provisioned] | None" = None) -> "SpawnService":
        """The spawn pipeline of this host; its provisioning step is ``provision`` (a remote op's
        writer of the text it received), else this host's secrets service."""
        from colibri.resources import shipped
        from colibri.services.lifecycle.layout import SpawnPaths
        from colibri.services.lifecycle.pipeline import SpawnService

        settings = self.settings
        paths = SpawnPaths(
            settings.run_dir,
            settings.skills_dir or shipped("skills"),
            settings.jail_user,
            settings.jail_ip_pool,
            settings.jail_template,
            settings.tenant_uid_base,
            settings.tenant_uid_blocks,
            settings.state_dir,
        )
        return SpawnService(
            self.store,
            self.backend(),
            paths,
            provision=provision or self.secrets().provision,
            notify_daemon=self._open_socket,
            local_home=self._local_home(),
            skills=skill_wiring.planner(settings),
        )

    def _reload_secrets(self, tenant_id: str) -> None:
        daemon_nudge.reload_secrets(self.daemon_client(), tenant_id)

    def _open_socket(self, tenant_id: str) -> None:
        daemon_nudge.open_socket(self.daemon_client(), tenant_id)

    def _close_socket(self, tenant_id: str) -> bool:
        return daemon_nudge.close_socket(self.daemon_client(), tenant_id)

    def jails(self) -> "AgentService":
        """start, stop, destroy and release of spawned agents."""
        from colibri.services.lifecycle.operations import AgentService

        settings = self.settings
        return AgentService(
            self.store,
            self.backend(),
            settings.run_dir / "locks",
            state_dir=settings.state_dir,
            jail_user=settings.jail_user,
            local_home=self._local_home(),
            close_socket=self._close_socket,
        )

    def reconciler(self) -> "Reconciler":
        from colibri.services.lifecycle.reconcile import Reconciler

        return Reconciler(self.store, self.jails(), host=self.settings.host)

    # ---- many hosts ------------------------------------------------------------------------------
    def placement(self) -> "Placement":
        return self.lifecycle().placement

    def lifecycle(self) -> "Lifecycle":
        """The lifecycle commands, each sent to its tenant's host (one per command: it keeps the
        links it made and the hosts that failed)."""
        if self._lifecycle is None:
            from colibri.services.lifecycle.placement import Placement
            from colibri.services.lifecycle.routing import Lifecycle

            placement = Placement(self.store, self.settings.host, self._host_links(), self.record())
            self._lifecycle = Lifecycle(
                placement, agents=self.jails, spawner=self.spawner, reconciler=self.reconciler, secrets=self.secrets
            )
        return self._lifecycle

    def _host_links(self) -> "LinkFactory":
        if self.adapters.host_links is not None:
            return self.adapters.host_links
        return self._ssh_link

    def _ssh_link(self, reach: "HostReach") -> "HostLink":
        """A host's link over SSH (colibri/adapters/ssh.py): paramiko is imported here, when a
        command first meets another host's tenant, never by a single-host colibri."""
        from colibri.adapters.ssh_transport import SshTarget

        target = SshTarget(
            reach.name, reach.user, reach.address, reach.port, reach.host_keys, reach.command or "colibri"
        )
        link: HostLink = self.ssh().link(target)
        return link

    def host_services(self) -> "ServingHost":
        """What this host's lifecycle ops need when it serves the orchestrator (remote serve)."""
        from colibri.services.hosts.remote_ops import ServingHost

        return ServingHost(
            host=self.settings.host,
            store=self.store,
            backend=self.backend,
            agents=self.jails,
            spawner=self.spawner,
            reconciler=self.reconciler,
            env_writer=self.env_writer,
            spawn_parallelism=self.settings.spawn_parallelism,
        )

    def remote_ops(self) -> "dict[str, Op]":
        """The lifecycle op table ``colibri remote serve`` dispatches to (with ping, version)."""
        from colibri.services.hosts.remote_ops import lifecycle_ops

        return lifecycle_ops(self.host_services())

    def env_writer(self) -> "EnvWriter":
        """This host's writer of rendered .env files (no vault, no credentials)."""
        from colibri.services.secrets_write import EnvWriter

        settings = self.settings
        return EnvWriter(
            self.store,
            settings.jail_user,
            tuple(settings.allowed_secret_roots),
            secrets_changed=self._reload_secrets,
            jail_root_of=self._jail_root_of,
            digest=self.audit_digest(),
        )

    def _jail_root_of(self, tenant_id: str, backend_name: str) -> Path:
        from colibri.services.lifecycle.jail_root import jail_root_of

        return jail_root_of(self.settings.state_dir, self.backend(), tenant_id, backend_name)

    def daemon_client(self) -> "DaemonClient":
        """The daemon's admin socket (``run_dir/admin.sock``)."""
        from colibri.adapters.daemon_client import DaemonClient

        return DaemonClient(self.settings.run_dir / "admin.sock")

    def run_daemon(self, log_target: str | None) -> None:
        """Run the hive daemon in the foreground until SIGTERM (the daemon opens its own store)."""
        from colibri.daemon.server import run_forever

        settings = self.settings
        if log_target is not None:
            settings = settings.model_copy(update={"log_target": log_target})
        run_forever(settings, self.config_path)

    def secrets(self) -> "SecretsService":
        """Secrets provisioning: the bw adapter, the operator's credentials and the store."""
        from colibri.adapters.credentials import CredentialStore
        from colibri.services.secrets import SecretsConfig, SecretsService

        settings = self.settings
        config = SecretsConfig(
            host=settings.host,
            jail_user=settings.jail_user,
            staged_dir=settings.staged_dir,
            allowed_roots=tuple(settings.allowed_secret_roots),
            organization_id=settings.vault_organization_id,
        )
        credentials = CredentialStore(settings.vault_credentials_dir)
        return SecretsService(
            self.store,
            config,
            self._bitwarden(),
            credentials,
            secrets_changed=self._reload_secrets,
            send_env=lambda host, tenant, content, collection_id: self.lifecycle().send_env(
                host, tenant, content, collection_id
            ),
            check_placed=lambda tenant, host: self.placement().check_placed(tenant, host),
            writer=self.env_writer(),
            digest=self.audit_digest(),
        )

    def audit_digest(self) -> "Callable[[bytes], str]":
        """The audit's keyed digest of provisioned content (a root-only key in the state dir)."""
        from colibri.adapters.audit_digest import Digester

        return Digester(self.settings.state_dir / "audit" / "digest.key")

    def vault(self) -> "VaultService":
        """``colibri vault login|status|check``."""
        from colibri.adapters.credentials import CredentialStore
        from colibri.services.secrets_vault import VaultService

        settings = self.settings
        credentials = CredentialStore(settings.vault_credentials_dir)
        return VaultService(
            self._bitwarden(), credentials, settings.vault_url, settings.vault_organization_id, store=lambda: self.store
        )

    def _bitwarden(self) -> "Bitwarden | None":
        """The bw adapter, or None while vault_url / vault_organization_id are unset."""
        import os

        from colibri.adapters.backends import SYSTEM_PATH
        from colibri.adapters.bitwarden import Bitwarden, BwConfig
        from colibri.adapters.runner import ShRunner

        settings = self.settings
        if not settings.vault_url or not settings.vault_organization_id:
            return None
        config = BwConfig(
            bw_path=settings.bw_path,
            appdata_dir=settings.state_dir / "bw",
            server_url=settings.vault_url,
            organization_id=settings.vault_organization_id,
            ca_file=settings.vault_ca_file,
            timeout=settings.bw_timeout,
        )
        # bw is a node script (#!/usr/bin/env node): node must be on PATH; nothing else is passed.
        path = os.environ.get("PATH") or ":".join(SYSTEM_PATH)
        # bw's `list items` covers the whole organisation: more room than a jail command gets.
        return Bitwarden(ShRunner({"PATH": path}, max_output=64 << 20), config)

    def ssh(self) -> "SshHosts":
        """The kept SSH connections to the hive's hosts (closed with the context)."""
        if self._ssh is None:
            from colibri.adapters.ssh import SshHosts

            settings = self.settings
            self._ssh = SshHosts(
                settings.ssh_key_file, settings.ssh_connect_timeout, settings.ssh_op_timeout, settings.ssh_channels
            )
        return self._ssh

    def hosts(self) -> "HostService":
        """``colibri hosts``: enrolment, liveness, check over SSH."""
        from colibri.services.hosts.enrol import HostService

        return HostService(
            self.store,
            self.ssh,
            grace=self.settings.host_lease_grace,
            record=self.record(),
            settle=lambda host: [d.jail for d in self.lifecycle().settle_owed(host) if d.applied],
        )

    def audit_signer(self) -> "AuditSigner":
        """This host's audit signer: its key and memory in ``state_dir/audit`` (0700, the user's colibri runs as)."""
        from colibri.adapters.audit_keys import KeyDir
        from colibri.services.audit.signer import AuditSigner

        settings = self.settings
        return AuditSigner(self.store, KeyDir(settings.state_dir / "audit", settings.host), settings.host)

    def _head(self) -> int:
        from colibri.store.audit_head import head_seq

        with self.store.connect() as conn:
            return head_seq(conn, self.settings.host)

    def _sign_audit(self) -> None:
        """A command that recorded state changes signs them before it ends (no unsigned window)."""
        from colibri.errors import ColibriError

        try:
            if self._audit_head is not None and self._head() > self._audit_head:
                self.audit_signer().checkpoint()
        except ColibriError as exc:
            from colibri.cli import output

            wait = self.settings.audit_checkpoint_seconds
            output.note(
                f"colibri: audit checkpoint not signed now ({exc}); a running daemon signs it within {wait:g} s"
            )

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
        if self._store is not None:
            self._sign_audit()
            self._store.close()


def get(ctx: typer.Context) -> Context:
    obj: Any = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj
