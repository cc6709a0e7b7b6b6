"""``colibri skills``: the signed first-party skills supply chain (issue 13), a host's side.

``trust`` pins this host's ONE root key; ``list``/``show`` read the index as this host trusts it;
``verify`` checks skills (or a local bundle) in full; ``allow`` pins a community skill by digest.
The signing machine's commands (keygen, build, sign, delegate, revoke, publish) are in
cli/skills_sign.py.  ``wiring`` builds the services from the settings (also what spawn needs: S2).
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from colibri.cli import context, output

if TYPE_CHECKING:
    from colibri.services.skills.host import SkillsService
    from colibri.services.skills.resolve import SkillResolver
    from colibri.settings import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]

skills_app = typer.Typer(
    help="Signed first-party skills: trust (pin the root key), list, show, verify, allow (community); "
    "on the offline signing machine: keygen, build, sign, delegate, revoke, publish. See runbooks/skills.md.",
    no_args_is_help=True,
)


def now() -> datetime:
    return datetime.now(UTC)


def resolver(settings: "Settings") -> "SkillResolver":
    """The resolver spawn uses (None repository: ``available()`` is False)."""
    from colibri.adapters.skill_repo import open_repository
    from colibri.adapters.skill_trust import TrustStore
    from colibri.services.skills.resolve import SkillResolver

    location = settings.skills_repository
    repository = open_repository(location, settings.skills_fetch_timeout) if location else None
    return SkillResolver(repository, TrustStore(settings.state_dir / "supply"), now)


def service(ctx: typer.Context) -> "SkillsService":
    from colibri.services.skills.host import SkillsService

    ctxo = context.get(ctx)
    found = resolver(ctxo.settings)
    return SkillsService(ctxo.store, found.trust, found.repository, now)


@skills_app.command("trust")
def trust(
    ctx: typer.Context,
    key: Annotated[Path, typer.Argument(help="The root public key file (ROOT.pub), brought from the signing machine.")],
    replace: Annotated[bool, typer.Option("--replace", help="Pin this key in place of another root key.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Pin the repository's root public key on this host (state_dir/supply/root.pub, root-only).
    Compare its key id with the one `skills keygen` printed on the signing machine. Signing keys
    the root delegates, rotates or revokes need no new pin."""
    from colibri.adapters.skill_keys import read_file

    found = service(ctx).trust_root(read_file(key, 4096, "the root key file"), replace)
    state = "pinned" if found["changed"] else "already pinned"
    output.show(found, as_json, text=f"skills root key {found['root_key']}: {state}")


def _status_line(doc: dict[str, Any]) -> str:
    if doc["index_version"] is None:
        return f"no trusted index: {doc['reason']}"
    state = "EXPIRED" if doc["expired"] else "valid"
    where = "fetched now" if doc["fresh"] else f"last-known-good (stale: {doc['reason']})"
    return f"index version {doc['index_version']}, {state} until {doc['expires']}, {where}"


@skills_app.command("list")
def list_skills(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The skills this host may install: the repository's index (fetched and verified now, else
    the last-known-good copy, marked stale) and the community skills allowed here. An expired or
    stale index is shown but never installed from."""
    found = service(ctx).listing()
    if as_json:
        output.emit_json(found)
        return
    output.note(_status_line(found))
    output.table(
        ("SKILL", "VERSION", "SOURCE", "CAPABILITIES", "DIGEST"),
        (
            (s["name"], s["version"], s["source"], ",".join(s["capabilities"]), s["digest"][:19])
            for s in found["skills"]
        ),
    )


@skills_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The skill's name.")],
    as_json: JsonFlag = False,
) -> None:
    """One skill: every version with its bundle and manifest digests, size, capabilities and source."""
    found = service(ctx).show(name)
    if as_json:
        output.emit_json(found)
        return
    output.note(_status_line(found["index"]))
    output.table(
        ("VERSION", "SOURCE", "CAPABILITIES", "SIZE", "DIGEST"),
        (
            (v["version"], v["source"], ",".join(v["capabilities"]), v.get("size"), v["digest"])
            for v in found["versions"]
        ),
    )


@skills_app.command("verify")
def verify(
    ctx: typer.Context,
    skills: Annotated[list[str] | None, typer.Argument(help="NAME[@VERSION] of skills in the repository.")] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Check a local bundle file instead (and BUNDLE.sig if present).")
    ] = None,
    tier: Annotated[str, typer.Option("--tier", help="Verify as for a paid or a community tenant.")] = "paid",
    as_json: JsonFlag = False,
) -> None:
    """Verify skills in full as an install would (root, index, signature, every file), writing
    nothing but the trust store's memory; exit 22 with the reason when one is refused."""
    from colibri.adapters.skill_keys import read_file
    from colibri.services.skills.resolve import SkillRef
    from colibri.supply.bundle import MAX_BUNDLE

    if bundle is not None:
        data = read_file(bundle, MAX_BUNDLE, "the bundle")
        sig_path = bundle.with_name(bundle.name + ".sig")
        sig = read_file(sig_path, 4096, "the signature") if sig_path.exists() else None
        found = service(ctx).verify_file(data, sig)
        signed = f"signed by {found['signed_by']}" if found["signed_by"] else "NOT signed (no .sig beside it)"
        output.show(
            found, as_json, text=f"skill {found['name']}@{found['version']}: {found['files']} files match, {signed}"
        )
        return
    refs = [SkillRef.parse(text) for text in skills or []]
    if not refs:
        raise typer.BadParameter("name skills to verify, or --bundle FILE")
    verified = service(ctx).verify(refs, tier)
    rows = [
        {
            "name": v.name,
            "version": v.version,
            "digest": v.digest,
            "source": v.source,
            "capabilities": list(v.capabilities),
        }
        for v in verified
    ]
    if as_json:
        output.emit_json(rows)
        return
    for row in rows:
        output.line(f"skill {row['name']}@{row['version']}: verified ({row['source']}, {row['digest'][:19]})")


@skills_app.command("allow")
def allow(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The community skill's name.")],
    bundle: Annotated[Path, typer.Option("--bundle", help="The reviewed bundle file (kept in the trust store).")],
    digest: Annotated[
        str | None, typer.Option("--digest", help="The sha256:<hex> the review approved; refused if the file differs.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Allow a community skill on this host, pinned by its bundle's digest: community tenants may
    get it (at the operator's risk); a paid tenant never does."""
    from colibri.adapters.skill_keys import read_file
    from colibri.supply.bundle import MAX_BUNDLE

    found = service(ctx).allow(name, read_file(bundle, MAX_BUNDLE, "the bundle"), digest)
    state = "allowed" if found["changed"] else "already allowed"
    output.show(found, as_json, text=f"community skill {name}@{found['version']}: {state} ({found['digest']})")


def register(app: typer.Typer) -> None:
    from colibri.cli import skills_sign

    skills_sign.register(skills_app)
    app.add_typer(skills_app, name="skills")
