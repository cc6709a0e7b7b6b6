"""``colibri skills keygen|build|sign|delegate|revoke|publish``: the signing machine's commands.

They run where the root and signing keys live, offline from the hosts (runbooks/skills.md); they
write key files, bundles and the repository directory, never a host's trust store.  ``delegate``,
``revoke`` and ``publish`` change what every host will trust: each records its audit entry.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from colibri.cli import context, output

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The repository directory (root.json, index.json, bundles/).")]
KeyOpt = Annotated[Path, typer.Option("--key", help="The signing key's private key file (0600).")]
RootKeyOpt = Annotated[Path, typer.Option("--root-key", help="The ROOT private key file (0600; kept offline).")]


def now() -> datetime:
    return datetime.now(UTC)


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("build")(build)
    app.command("sign")(sign)
    app.command("delegate")(delegate)
    app.command("revoke")(revoke)
    app.command("publish")(publish_cmd)


def keygen(
    out: Annotated[Path, typer.Argument(help="The private key file to create (0600); OUT.pub is its public key.")],
    as_json: JsonFlag = False,
) -> None:
    """Make an Ed25519 key pair (a root key or a signing key): OUT (private, 0600, never over an
    existing file) and OUT.pub (one line to copy to hosts or to `skills delegate`)."""
    from colibri.adapters.skill_keys import write_new
    from colibri.services.skills.publish import new_key

    private, public, key_id = new_key()
    write_new(out, private, 0o600)
    write_new(out.with_name(out.name + ".pub"), public.encode(), 0o644)
    found = {"key_id": key_id, "private": str(out), "public": f"{out}.pub"}
    output.show(found, as_json, text=f"key {key_id}: {out} (private, keep it offline) and {out}.pub")


def build(
    directory: Annotated[Path, typer.Argument(help="The skill directory (SKILL.md, handlers/<capability>, ...).")],
    version: Annotated[str, typer.Option("--version", help="MAJOR.MINOR.PATCH.")],
    capability: Annotated[
        list[str] | None, typer.Option("--capability", help="A capability the skill provides (repeatable).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The skill's name (default: the directory's).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="The bundle to write (default NAME-VERSION.tar).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Pack a skill directory into a bundle: a tar of NAME/ with NAME/MANIFEST.json listing every
    file's path, size, mode and sha256. Symlinks, devices and hidden files are refused."""
    from colibri.adapters.skill_keys import write_new
    from colibri.services.skills.publish import build as building
    from colibri.supply.bundle import digest

    skill = name or directory.resolve().name
    data, manifest = building(directory, skill, version, tuple(capability or ()))
    target = out or Path(f"{skill}-{version}.tar")
    write_new(target, data, 0o644)
    found = {
        "name": skill,
        "version": version,
        "bundle": str(target),
        "digest": digest(data),
        "files": len(manifest.files),
    }
    output.show(
        found, as_json, text=f"skill {skill}@{version}: {target} ({len(manifest.files)} files, {found['digest']})"
    )


def sign(
    bundle: Annotated[Path, typer.Argument(help="The bundle to sign.")],
    key: KeyOpt,
    as_json: JsonFlag = False,
) -> None:
    """Check a bundle in full and write its detached signature BUNDLE.sig (the manifest's digest,
    signed with KEY and naming its key id). Signing again (after a key rotation) replaces it; the
    bundle's own bytes, and so its digest, never change."""
    from colibri.adapters.skill_keys import read_file, read_private, write_replace
    from colibri.services.skills.publish import sign as signing
    from colibri.supply import keys
    from colibri.supply.bundle import MAX_BUNDLE

    private = read_private(key)
    sig, manifest = signing(read_file(bundle, MAX_BUNDLE, "the bundle"), private)
    target = bundle.with_name(bundle.name + ".sig")
    write_replace(target, sig)
    key_id = keys.key_id(keys.raw_public(private))
    found = {"name": manifest.name, "version": manifest.version, "signature": str(target), "key_id": key_id}
    output.show(found, as_json, text=f"skill {manifest.name}@{manifest.version}: signed by {key_id} ({target})")


def delegate(
    ctx: typer.Context,
    public: Annotated[Path, typer.Argument(help="The signing key's public key file (KEY.pub).")],
    repo: RepoOpt,
    root_key: RootKeyOpt,
    days: Annotated[int, typer.Option("--days", min=1, max=3650, help="The delegation's lifetime.")] = 365,
    as_json: JsonFlag = False,
) -> None:
    """Delegate a signing key in the repository's root.json (a new root version, signed by the
    root key; made if there is none). Hosts take it on their next fetch, with no new pin."""
    from colibri.adapters.skill_keys import read_file, read_private
    from colibri.adapters.skill_repo import DirectoryRepository
    from colibri.services.skills import publish
    from colibri.store.audit_hooks import record
    from colibri.supply import keys

    raw = keys.parse_public_line(read_file(public, 4096, "the public key file"), str(public))
    ctxo = context.get(ctx)
    with ctxo.store.session() as session:
        key_id, version = publish.delegate(
            DirectoryRepository(repo), read_private(root_key), raw, now() + timedelta(days=days)
        )
        record(session, "skills.delegate", f"skills-key:{key_id}", root_version=version, days=days)
    found = {"key_id": key_id, "root_version": version, "days": days}
    output.show(found, as_json, text=f"key {key_id}: delegated for {days} days (root.json version {version})")


def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The signing key's id (ed25519:...).")],
    repo: RepoOpt,
    root_key: RootKeyOpt,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a signing key in root.json: hosts refuse the index and every bundle it signed from
    their next fetch. Re-sign and publish the bundles with a delegated key first."""
    from colibri.adapters.skill_keys import read_private
    from colibri.adapters.skill_repo import DirectoryRepository
    from colibri.services.skills import publish
    from colibri.store.audit_hooks import record

    ctxo = context.get(ctx)
    with ctxo.store.session() as session:
        version = publish.revoke(DirectoryRepository(repo), read_private(root_key), key_id)
        record(session, "skills.revoke", f"skills-key:{key_id[:40]}", root_version=version)
    found = {"key_id": key_id, "root_version": version}
    output.show(found, as_json, text=f"key {key_id}: revoked (root.json version {version})")


def publish_cmd(
    ctx: typer.Context,
    bundles: Annotated[
        list[Path] | None, typer.Argument(help="Signed bundles (each with BUNDLE.sig beside it).")
    ] = None,
    repo: RepoOpt = Path("."),
    key: KeyOpt = Path("signing.key"),
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="The new index's lifetime.")] = 30,
    as_json: JsonFlag = False,
) -> None:
    """Add signed bundles to the repository and sign a new index (its version one higher, valid
    DAYS). A version already published with another bundle is refused; with no bundle, the index
    is only signed again (to renew its expiry, or with a new key after a rotation)."""
    from colibri.adapters.skill_keys import read_file, read_private
    from colibri.adapters.skill_repo import DirectoryRepository
    from colibri.services.skills import publish
    from colibri.store.audit_hooks import record
    from colibri.supply.bundle import MAX_BUNDLE

    private = read_private(key)
    pairs = [
        (read_file(b, MAX_BUNDLE, "the bundle"), read_file(b.with_name(b.name + ".sig"), 4096, "the bundle's .sig"))
        for b in bundles or []
    ]
    ctxo = context.get(ctx)
    moment = now()
    with ctxo.store.session() as session:
        done, version = publish.publish(
            DirectoryRepository(repo), pairs, private, moment, moment + timedelta(days=days)
        )
        record(
            session,
            "skills.publish",
            f"skills-index:{version}",
            skills=[f"{p.name}@{p.version}" for p in done],
            days=days,
        )
    found = {
        "index_version": version,
        "published": [{"name": p.name, "version": p.version, "digest": p.digest, "added": p.added} for p in done],
    }
    names = ", ".join(f"{p.name}@{p.version}" for p in done) or "no bundle (re-signed)"
    output.show(found, as_json, text=f"index version {version}: {names}; valid {days} days")
