"""Build the jail backend the ``jail_backend`` setting names (for the CLI and the daemon alike)."""

import os

from colibri.adapters.jail import JailBackend
from colibri.adapters.runner import ShRunner
from colibri.resources import shipped
from colibri.settings import Settings

SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def tool_path() -> str:
    """PATH for external tools: the caller's PATH, then the system directories (service(8) and
    rc.d give a minimal PATH; bastille, jls, jexec, bwrap and nsenter live in these)."""
    entries = [p for p in os.environ.get("PATH", "").split(":") if p]
    return ":".join(entries + [p for p in SYSTEM_PATH if p not in entries])


def make_backend(settings: Settings) -> JailBackend:
    runner = ShRunner({"PATH": tool_path(), "LANG": "C.UTF-8"})
    if settings.jail_backend == "sandbox":
        from colibri.adapters.sandbox.backend import Sandbox
        from colibri.adapters.sandbox.cgroups import Limits

        limits = Limits(settings.jail_memory_mib, settings.jail_max_processes, settings.jail_cpu_percent)
        return Sandbox(
            settings.jails_dir,
            shipped("jails"),
            settings.jail_user,
            runner,
            limits=limits,
            open_files=settings.jail_open_files,
        )
    from colibri.adapters.bastille.backend import Bastille

    return Bastille.from_settings(settings, runner, shipped("jails"))
