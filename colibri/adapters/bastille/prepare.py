"""Preparing the host and a new jail for the agent template (mixed into ``Bastille``): bastille is
bootstrapped, colibri's own templates are installed, and the jail's pkg configuration pins the
first-party repository (``pkgrepo``: for a paid tenant, the only one) before the template runs."""

from pathlib import Path

from colibri.adapters import jailfs
from colibri.adapters.bastille import pkgrepo
from colibri.adapters.bastille.core import BastilleCore
from colibri.adapters.bastille.pkgrepo import FirstPartyRepo
from colibri.errors import BastilleError, TemplateNotFound


class Prepare(BastilleCore):
    _prefix: Path
    _release: str
    _templates_source: Path
    _pkg_repo: FirstPartyRepo

    def _require_bootstrap(self) -> None:
        """``bastille bootstrap RELEASE`` makes the prefix's directories (templates, releases, jails...)
        and extracts the release; bootstrap.sh calls a release complete when its COPYRIGHT is there
        (bastille 1.4.4 bootstrap.sh: bootstrap_directories, "Bootstrap appears complete!")."""
        missing = [
            path
            for path in (self._prefix / "templates", self._prefix / "releases" / self._release / "COPYRIGHT")
            if not (path.is_dir() if path.name == "templates" else path.is_file())
        ]
        if missing:
            raise BastilleError(
                f"bastille is not bootstrapped for {self._release} on this host ({missing[0]} is missing): "
                f"run 'bastille bootstrap {self._release}', then spawn again"
            )

    def _install_template(self, template: str) -> None:
        """colibri's own templates (``colibri/NAME``) are copied from the package into bastille's
        templates dir; any other name must already be there."""
        namespace, _, short = template.partition("/")
        target = self._prefix / "templates" / template
        if namespace == "colibri" and (self._templates_source / short / "Bastillefile").is_file():
            jailfs.copy_tree(self._templates_source / short, self._prefix / "templates", template)
            bootstrap = self._templates_source / "agent-jail-bootstrap.sh"  # shared by colibri's templates
            jailfs.copy_tree(bootstrap, self._prefix / "templates", f"{template}/{bootstrap.name}")
        if not (target / "Bastillefile").is_file():
            raise TemplateNotFound(f"template not found: {template} (looked for {target / 'Bastillefile'})")

    def _check_pkg(self, tier: str) -> None:
        """Before anything is made: the first-party repository is configured and its fingerprints
        are well-formed (SupplyError, exit 22, otherwise)."""
        pkgrepo.check(self._pkg_repo, tier)

    def _stage_pkg(self, name: str, tier: str) -> None:
        """The jail's pkg configuration and fingerprints, where agent-jail-bootstrap.sh reads them."""
        pkgrepo.stage(self.root(name), self._pkg_repo, tier)
