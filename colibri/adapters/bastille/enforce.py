"""Applying and proving an agent jail's hardening on the bastille backend (mixed into ``Bastille``).

None of bastille's exit codes is trusted: ``bastille config`` always exits 0, ``bastille limits``
exits 0 for a stopped jail and keeps a stale value in rctl.conf when a rule is changed, and
``bastille start`` ignores ``rctl -a`` failures.  So each step reads back what is in force: the
jail.conf, the live parameters (jls), the kernel's rules (rctl), the jail's own passwd.
"""

from colibri.adapters import jailfs
from colibri.adapters.bastille import argv
from colibri.adapters.bastille.core import BastilleCore
from colibri.adapters.bastille.hardening import (
    FILE_ONLY,
    IDS_FILE,
    JAIL_PARAMS,
    Limits,
    conf_mismatches,
    id_conflict,
    ids_file,
    jail_conf_params,
    live_mismatches,
    parse_jls,
    parse_rctl,
    parse_rctl_conf,
)
from colibri.adapters.jail import AGENT_ID, JailIds, read_jail_passwd
from colibri.adapters.runner import CommandResult, stderr_tail
from colibri.errors import BastilleError, JailError, ToolMissing

RACCT_FIX = "add kern.racct.enable=1 to /boot/loader.conf and reboot"


class Hardening(BastilleCore):
    _limits: Limits
    _jail_user: str

    def _host_tool(self, command: list[str]) -> CommandResult:
        try:
            return self._run(command, env=self._env(), timeout=60, ok_codes=tuple(range(256)))
        except ToolMissing:
            raise BastilleError(f"{command[0]} not found: the bastille backend needs FreeBSD's {command[0]}") from None

    # ---- jail(8) parameters ----------------------------------------------------------------------------
    def _conf_params(self, name: str) -> dict[str, str | None]:
        try:
            return jail_conf_params((self.jails_dir / name / "jail.conf").read_text(errors="replace"))
        except OSError as exc:
            raise BastilleError(f"cannot read {name}'s jail.conf: {exc.strerror}") from None

    def _configure(self, name: str) -> bool:
        """``bastille config NAME set P V`` for each agent-jail parameter jail.conf lacks; read back.
        True when anything was set (the jail needs a restart)."""
        current = self._conf_params(name)
        last = None
        for param, value, _ in JAIL_PARAMS:
            if current.get(param) != value:
                last = self._bastille_run(*argv.config_set(name, param, value), timeout=60)
        for param, _ in FILE_ONLY:
            if param not in current:
                last = self._bastille_run(*argv.config_set(name, param, None), timeout=60)
        wrong = conf_mismatches(self._conf_params(name))
        if wrong:  # bastille config exits 0 whatever happened
            detail = f": {stderr_tail(last.stderr)}" if last is not None and stderr_tail(last.stderr) else ""
            raise BastilleError(f"bastille config {name} did not set {', '.join(wrong)}{detail}")
        return last is not None

    def _verify_params(self, name: str) -> None:
        """The running jail's parameters as the kernel has them (``jls -j NAME -h P...``)."""
        names = [param for param, _, _ in JAIL_PARAMS]
        result = self._host_tool(argv.jls_params(name, names))
        if result.exit_code != 0:
            raise BastilleError(f"jls cannot read jail {name}'s parameters: {stderr_tail(result.stderr)}")
        live = parse_jls(result.out, names)
        if live is None:
            raise BastilleError(f"cannot read jls's answer for jail {name}: {result.out.strip()[:200]!r}")
        wrong = live_mismatches(live)
        if wrong:
            raise BastilleError(
                f"jail {name} runs without its agent-jail parameters: {', '.join(wrong)} "
                f"(set them back with 'bastille config {name} set PARAM VALUE', or destroy-agent and spawn again)"
            )

    # ---- rctl limits -------------------------------------------------------------------------------------
    def _require_racct(self) -> None:
        result = self._host_tool(argv.racct_enabled())
        value = result.out.strip()
        if result.exit_code != 0 or value == "":
            raise BastilleError(
                "agent jails need resource limits, and this kernel has no RACCT/RCTL (sysctl kern.racct.enable: "
                f"{stderr_tail(result.stderr) or 'unknown'}): use a kernel with options RACCT and RCTL "
                f"(GENERIC has both), {RACCT_FIX}"
            )
        if value != "1":
            raise BastilleError(
                "agent jails need resource limits, and RACCT is disabled on this host "
                f"(kern.racct.enable={value[:8]}): {RACCT_FIX}"
            )

    def _live_rules(self, name: str) -> dict[str, int]:
        result = self._host_tool(argv.rctl_rules(name))
        if result.exit_code != 0:
            said = stderr_tail(result.stderr)
            fix = f"; {RACCT_FIX}" if "disabled" in said or "not present" in said else ""
            said = said or f"exit {result.exit_code}"
            raise BastilleError(f"rctl cannot list jail {name}'s limits: {said}{fix}")
        return parse_rctl(result.out, name)

    def _conf_rules(self, name: str) -> dict[str, str]:
        try:
            return parse_rctl_conf((self.jails_dir / name / "rctl.conf").read_text(errors="replace"), name)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise BastilleError(f"cannot read {name}'s rctl.conf: {exc.strerror}") from None

    def _apply_limits(self, name: str) -> None:
        """Each limit in rctl.conf (so ``bastille start`` re-adds it) and in the kernel, at its value;
        only what differs is changed, so a re-run is a no-op.  Verified with ``rctl jail:NAME``."""
        self._require_racct()
        wanted = self._limits.rules()
        conf, live = self._conf_rules(name), self._live_rules(name)
        said: list[str] = []
        changed = False
        for resource, amount in wanted.items():
            if conf.get(resource) == str(amount) and live.get(resource) == amount:
                continue
            changed = True
            if resource in conf and conf[resource] != str(amount):
                # bastille's own update of an existing rule never rewrites rctl.conf: remove, then add
                self._bastille_run(*argv.limits_remove(name, resource), timeout=60)
            result = self._bastille_run(*argv.limits_add(name, resource, amount), timeout=60)
            said += [ln for ln in (stderr_tail(result.stderr), stderr_tail(result.stdout)) if ln]
        if changed:
            conf, live = self._conf_rules(name), self._live_rules(name)
        wrong = [
            f"{resource}={live.get(resource, 'none')}/{conf.get(resource, 'none')} (want {amount})"
            for resource, amount in wanted.items()
            if live.get(resource) != amount or conf.get(resource) != str(amount)
        ]
        if wrong:
            detail = f": {said[-1]}" if said else ""
            raise BastilleError(
                f"rctl limits of jail {name} are not in force (kernel/rctl.conf): {', '.join(wrong)}{detail}"
            )

    # ---- the agent's uid/gid ------------------------------------------------------------------------------
    def _stage_ids(self, name: str, ids: JailIds | None) -> None:
        """Refuse ids another user or group of the jail holds; then leave them where the template's
        agent-jail-bootstrap.sh reads them (no ``--arg``: bastille eval's those)."""
        if ids is None:
            return
        root = self.root(name)
        try:
            passwd = jailfs.read_file(root, "etc/passwd").decode("utf-8", "replace")
            group = jailfs.read_file(root, "etc/group").decode("utf-8", "replace")
            conflict = id_conflict(passwd, group, self._jail_user, ids.agent_uid, ids.agent_gid)
            if conflict:
                raise BastilleError(f"jail {name}: cannot give {self._jail_user} its ids: {conflict}")
            jailfs.write_file(root, IDS_FILE, ids_file(ids), mode=0o644)
        except JailError as exc:
            raise BastilleError(f"jail {name}: cannot stage the agent's ids: {exc}") from None

    def _verify_agent(self, name: str, ids: JailIds | None) -> None:
        """The jail's own passwd has the agent user with exactly the allocated uid/gid."""
        try:
            got = read_jail_passwd(self.root(name), self._jail_user)
        except JailError as exc:
            raise BastilleError(str(exc)) from None
        want = (ids.agent_uid, ids.agent_gid) if ids is not None else (AGENT_ID, got[1])
        if got != want:
            raise BastilleError(
                f"jail {name}: user {self._jail_user} has uid/gid {got[0]}/{got[1]}, "
                f"not the allocated {want[0]}/{want[1]}"
            )
