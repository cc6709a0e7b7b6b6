"""``colibri audit``: the signed, hash-chained record of every state change (issue 12).

``verify`` is offline: it reads no settings, opens no store and uses no network; it trusts only
the keys given with ``--key``.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from colibri.cli import context, output
from colibri.text import safe

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]

audit_app = typer.Typer(help="The audit trail: log, export, verify (offline), prove, keys.", no_args_is_help=True)


@audit_app.command("log")
def log(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's entries.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only entries at or after this time (2026-12-01T17:00:00Z).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Only entries this host recorded.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (the newest), oldest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The recorded state changes: time, host, seq, actor, action, subject, outcome."""
    from colibri.services.audit import query

    ctxo = context.get(ctx)
    entries = query.log(ctxo.store, tenant, query.parse_since(since) if since else None, host, limit)
    if as_json:
        output.emit_json(entries)
        return
    output.table(
        ("TIME", "HOST", "SEQ", "ACTOR", "ACTION", "SUBJECT", "OUTCOME"),
        ((e["ts"], e["host"], e["seq"], e["actor"], e["action"], e["subject"], e["outcome"]) for e in entries),
    )


@audit_app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The bundle to write (0600; replaced atomically).")],
    as_json: JsonFlag = False,
) -> None:
    """Write every host's entries, checkpoints, cosignatures and public keys to FILE, after signing a
    fresh checkpoint of this host's newest entries. Check it anywhere with `colibri audit verify`."""
    from colibri.services.audit import export as exporting

    def progress(done: int, total: int) -> None:
        output.note(f"exported {done} of {total} entries")

    result = exporting.export(context.get(ctx).audit_signer(), file, progress if sys.stderr.isatty() else None)
    view = result.view()
    for warning in result.warnings:
        output.note(f"colibri: warning: {warning}")
    output.show(
        view,
        as_json,
        text=f"{view['path']}: {view['entries']} entries of {len(view['hosts'])} host(s), "
        f"{view['checkpoints']} checkpoints, {view['cosignatures']} cosignatures, {view['keys']} keys",
    )


@audit_app.command("verify")
def verify(
    file: Annotated[
        Path, typer.Argument(help="A bundle from `audit export`, or with --proof a proof from `audit prove`.")
    ],
    key: Annotated[
        list[str],
        typer.Option(
            "--key",
            help="A public key to trust (colibri.audit/<host>+<id>+<base64>, from `colibri audit keys` on "
            "that host), or a file of them. Repeatable; nothing else is trusted.",
        ),
    ],
    proof: Annotated[bool, typer.Option("--proof", help="FILE is an inclusion proof from `audit prove`.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check FILE offline (no settings, no store, no network): every entry chained, every checkpoint and
    cosignature signed by a trusted key and matching the entries. Exit 21 names the first failure."""
    from colibri.audit import verify as checking
    from colibri.audit import verify_proof as proofs

    keys = proofs.read_keys(key)
    if proof:
        found = proofs.verify_proof(file, keys)
        output.show(
            found,
            as_json,
            text=f"OK: entry {found['host']}#{found['seq']} is in the tree of size "
            f"{found['size']} signed {found['checkpoint_time']} by {found['key']}",
        )
        return
    view = checking.verify(file, keys).view()
    if as_json:
        output.emit_json(view)
        return
    # every name and time below comes from the bundle: each is escaped on its own, so none can
    # break its line (verify only reports signed, validated values; this is the second fence)
    output.line(
        f"OK: {sum(h['entries'] for h in view['hosts'])} entries of {len(view['hosts'])} host(s), "
        f"exported by {safe(view['exported_by'])} at {safe(view['exported_at'])}; "
        f"{view['cosignatures']} cosignatures"
    )
    for host in view["hosts"]:
        tail = (
            f"{host['unsigned_tail']} entries after the newest checkpoint "
            f"(since {safe(str(host['unsigned_since'] or '-'))}), signed only by the export"
            if host["unsigned_tail"]
            else "no unsigned tail"
        )
        cosigned = (
            f"cosigned up to {host['cosigned_size']} by {safe(', '.join(host['cosigned_by']))}"
            if host["cosigned_by"]
            else "not cosigned"
        )
        output.line(
            f"  {safe(host['host'])}: {host['entries']} entries, {host['checkpoints']} checkpoints "
            f"(newest {host['newest_checkpoint_size']} at {safe(host['newest_checkpoint_time'] or '-')}); "
            f"{tail}; {cosigned}"
        )


@audit_app.command("prove")
def prove(
    ctx: typer.Context,
    seq: Annotated[int, typer.Argument(help="The entry's seq on its host.")],
    host: Annotated[str | None, typer.Option("--host", help="The host that recorded it (default this one).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """An inclusion proof of one entry against its host's newest checkpoint (save it and check it with
    `colibri audit verify --proof FILE --key ...`)."""
    from colibri.services.audit import query

    ctxo = context.get(ctx)
    name = host or ctxo.settings.host
    signer = ctxo.audit_signer()
    if name == ctxo.settings.host and signer.keys.owned():
        signer.checkpoint()  # the newest entries are covered
    found = query.prove(ctxo.store, name, seq)
    if as_json:
        output.emit_json(found)
    else:
        sys.stdout.write(json.dumps(found, indent=2, ensure_ascii=True) + "\n")


@audit_app.command("keys")
def keys(
    ctx: typer.Context,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new key for this host, endorsed by the old one (retired).")
    ] = False,
    verifier_keys: Annotated[
        bool,
        typer.Option("--verifier-keys", help="Print only the public keys, one a line (a file for `verify --key`)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """This host's and the other hosts' audit public keys (give them to `audit verify --key`)."""
    from colibri.services.audit import query

    ctxo = context.get(ctx)
    signer = ctxo.audit_signer()
    own: Any = None
    if rotate:
        old, own = signer.rotate()
        output.note(f"audit key of {ctxo.settings.host} rotated: {old.key_id} retired, {own.key_id} endorsed by it")
    elif signer.keys.owned():
        own = signer.public_key()
    found = query.keys(ctxo.store, own)
    if verifier_keys:
        for row in found:
            if row["problem"] is None:  # a junk row of the store is never handed on as a key to trust
                output.line(row["public_key"])
        return
    if as_json:
        output.emit_json(found)
        return
    output.table(
        ("HOST", "KEY ID", "CREATED", "RETIRED", "ENDORSED BY", "PUBLIC KEY"),
        (
            (
                k["host"] + (" (this)" if k["this_host"] else "") + (" (junk)" if k["problem"] else ""),
                k["key_id"],
                k["created_at"],
                k["retired_at"],
                k["endorsed_by"],
                k["public_key"],
            )
            for k in found
        ),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
