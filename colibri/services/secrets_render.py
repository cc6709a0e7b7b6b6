"""Rendering a tenant's ``.env`` text, on the orchestrator: its staged provider.env, or its vault
collection's items in the snapshot of one vault session (``SecretsService`` in
colibri/services/secrets.py takes the snapshot; colibri/services/secrets_write.py writes the text).

A ``Plan`` is what one tenant's rendering needs, read from the store; ``render_env`` turns it
and the snapshot into a ``Rendered`` text, every bad key and value raised at once
(SecretsRefused); ``resolve_collection`` finds the tenant's collection id (a renamed, deleted or
ambiguous one is an error); ``as_refusal`` makes every refusal a SecretsError.  Nothing here
writes or logs a value.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from colibri.adapters import envfile
from colibri.adapters.bitwarden_output import VaultCollection, VaultItem, VaultSnapshot
from colibri.adapters.credentials import read_staged
from colibri.errors import ColibriError, NotFound, RemoteError, SecretsError, StoreError
from colibri.store.models import Tenant


@dataclass(frozen=True)
class Plan:
    """One tenant's rendering: its store row's fields and its staged provider.env."""

    tenant_id: str
    host: str
    collection_name: str | None
    collection_id: str | None
    backend: str | None
    jail_root: str | None
    staged: str | None  # the staged provider.env text
    staged_error: ColibriError | None = None
    uid_base: int | None = None


@dataclass(frozen=True)
class Rendered:
    """A tenant's ``.env``, rendered and not written.  ``content`` None: the tenant has no
    collection and nothing is staged (no secrets; nothing to write).  Never logged or shown."""

    tenant_id: str
    content: bytes | None = field(repr=False)
    source: str | None
    keys: tuple[str, ...]
    collection_id: str | None = None


def plan_of(tenant: Tenant, staged_dir: Path, staged_for: str | None = None) -> Plan:
    """What rendering the tenant's ``.env`` needs, read now: the store's row and its staged
    provider.env (or why that could not be read).  ``staged_for``: whose staged provider.env a
    child's is, its lineage root's (its collection is the root's too: ``tenants.collection_name``)."""
    staged, staged_error = None, None
    try:
        staged = read_staged(staged_dir, staged_for or tenant.tenant_id)
    except ColibriError as exc:
        staged_error = exc
    return Plan(
        tenant.tenant_id,
        tenant.host,
        tenant.collection_name,
        tenant.collection_id,
        tenant.backend,
        tenant.jail_root,
        staged,
        staged_error,
        tenant.uid_base,
    )


def render_env(
    plan: Plan,
    snapshot: VaultSnapshot | None,
    resolved: dict[str, str | ColibriError],
    vault_error: ColibriError | None,
    staged_dir: Path,
) -> Rendered:
    """The tenant's .env text (its staged provider.env, else its collection's items), or
    ``content`` None when it has neither; every bad key and value raised at once."""
    if plan.staged_error is not None:
        raise plan.staged_error
    if plan.staged is None and not plan.collection_name:
        return Rendered(plan.tenant_id, None, None, ())
    collection_id = None
    problems: list[str] = []
    if plan.staged is not None:
        source = "staged provider.env"
        origin = f"{staged_dir}/{plan.tenant_id}/provider.env"
        entries = envfile.parse_lines(plan.staged, origin, problems)
    else:
        if vault_error is not None:
            raise vault_error
        assert snapshot is not None and plan.collection_name is not None
        source = f"collection {plan.collection_name}"
        found = resolved.get(plan.tenant_id)
        if isinstance(found, ColibriError):
            raise found
        assert found is not None, "select() resolved every tenant that needs the vault"
        collection_id = found
        entries = entries_of(snapshot.items, collection_id, problems)
    content = envfile.render(entries, f"secrets of tenant {plan.tenant_id} from {source}", problems)
    keys = tuple(sorted({e.key for e in entries}))
    return Rendered(plan.tenant_id, content, source, keys, collection_id)


def resolve_collection(
    plan: Plan, collections: Sequence[VaultCollection], organization_id: str | None, rebind: bool
) -> str:
    """The id of the tenant's collection; a renamed, deleted or ambiguous one is an error."""
    name, stored, tenant = plan.collection_name, plan.collection_id, plan.tenant_id
    named = [c for c in collections if c.name == name]
    if len(named) > 1:
        raise SecretsError(f"{len(named)} collections are named {name!r} in the organization: rename all but one")
    if stored and not rebind:
        current = next((c for c in collections if c.id == stored), None)
        if current is None:
            hint = f"; a new collection of that name exists: 'colibri provision {tenant} --rebind' uses it"
            raise SecretsError(
                f"the collection {name!r} of tenant {tenant} (id {stored}) was deleted" + (hint if named else "")
            )
        if current.name != name:
            raise SecretsError(
                f"the collection of tenant {tenant} (id {stored}) was renamed from {name!r} to "
                f"{current.name!r}: rename it back, or run 'colibri provision {tenant} --rebind'"
            )
        return stored
    if not named:
        raise SecretsError(f"collection {name!r} not found in organization {organization_id}")
    return named[0].id


def as_refusal(exc: ColibriError) -> ColibriError:
    """Every provisioning refusal is a SecretsError (exit 12), its cause in the message: an
    unsafe path or .env (PermissionDenied), loose credentials, bw missing or timed out.  A store
    error stays itself (the database failed, not the secrets), so does a remote host's (the .env
    there is kept; the link failed, exit 13) and a host not enrolled (4), and so does a bug's
    stand-in."""
    if isinstance(exc, SecretsError | StoreError | RemoteError | NotFound) or type(exc) is ColibriError:
        return exc
    refusal = SecretsError(str(exc))
    refusal.__cause__ = exc
    return refusal


def entries_of(
    items: Sequence[VaultItem], collection_id: str, problems: list[str] | None = None
) -> list[envfile.Entry]:
    """Custom fields and note lines of the collection's items, in a stable order (a note line
    that is not KEY=VALUE goes to ``problems`` when given, else it is raised)."""
    entries: list[envfile.Entry] = []
    chosen = sorted((i for i in items if collection_id in i.collection_ids), key=lambda i: (i.name, i.id))
    for item in chosen:
        label = f"item {item.name!r} ({item.id})"
        entries += [
            envfile.Entry(name, value, f"{label} custom field {number}")
            for number, (name, value) in enumerate(item.fields, start=1)
        ]
        if item.notes:
            entries += envfile.parse_lines(item.notes, f"{label} notes", problems)
    return entries
