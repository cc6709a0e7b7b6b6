"""In-memory vault state of the test server: users, organizations, collections, items.

Plaintext is the source of truth; responses encrypt on the way out (see ``responses.py``).
Every mutation bumps the revision date so that ``bw sync`` (which only compares
``/api/accounts/revision-date`` with its last sync) notices the change.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from . import crypto


def new_id() -> str:
    # bw rejects non-GUID ids (e.g. for --organizationid).
    return str(uuid.uuid4())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Role(IntEnum):
    """Vaultwarden's MembershipType values."""

    OWNER = 0
    ADMIN = 1
    USER = 2
    MANAGER = 3


class FieldType(IntEnum):
    TEXT = 0
    HIDDEN = 1


class CipherType(IntEnum):
    LOGIN = 1
    SECURE_NOTE = 2


@dataclass
class Field:
    name: str
    value: str
    type: FieldType = FieldType.TEXT

    @classmethod
    def text(cls, name: str, value: str) -> Field:
        return cls(name, value, FieldType.TEXT)

    @classmethod
    def hidden(cls, name: str, value: str) -> Field:
        return cls(name, value, FieldType.HIDDEN)


FieldsArg = Mapping[str, str] | Iterable[Field]


def _fields(arg: FieldsArg) -> list[Field]:
    # A plain mapping means text fields, the common case for .env-style values.
    if isinstance(arg, Mapping):
        return [Field.text(k, v) for k, v in arg.items()]
    return list(arg)


@dataclass
class Login:
    username: str | None = None
    password: str | None = None
    uris: list[str] = field(default_factory=list)


@dataclass
class User:
    email: str
    password: str
    kdf_iterations: int
    keys: crypto.AccountKeys
    name: str
    id: str = field(default_factory=new_id)
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(22))
    security_stamp: str = field(default_factory=new_id)
    created_ms: int = field(default_factory=now_ms)
    user_key_id: str | None = None  # set by POST /api/accounts/key-management/user-key-id

    @property
    def client_id(self) -> str:
        return f"user.{self.id}"


@dataclass
class Membership:
    user_id: str
    role: Role
    wrapped_org_key: str  # type-4, under the member's public key
    access_all: bool = True
    collection_ids: set[str] = field(default_factory=set)  # only used when not access_all
    id: str = field(default_factory=new_id)

    @property
    def full_access(self) -> bool:
        # Owners and admins always see every collection, like Vaultwarden's has_full_access().
        return self.access_all or self.role in (Role.OWNER, Role.ADMIN)


@dataclass
class Organization:
    name: str
    key: crypto.SymmetricKey
    id: str = field(default_factory=new_id)
    members: dict[str, Membership] = field(default_factory=dict)  # by user id


@dataclass
class Collection:
    org_id: str
    name: str
    id: str = field(default_factory=new_id)


@dataclass
class Item:
    org_id: str
    collection_ids: list[str]
    name: str
    notes: str | None = None
    fields: list[Field] = field(default_factory=list)
    login: Login | None = None
    id: str = field(default_factory=new_id)
    created_ms: int = field(default_factory=now_ms)
    revised_ms: int = field(default_factory=now_ms)

    @property
    def type(self) -> CipherType:
        return CipherType.LOGIN if self.login is not None else CipherType.SECURE_NOTE


class Vault:
    """All server state behind one lock; seeding and runtime mutation use the same methods."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.orgs: dict[str, Organization] = {}
        self.collections: dict[str, Collection] = {}
        self.items: dict[str, Item] = {}
        self.revision_ms = now_ms()

    def touch(self) -> None:
        """Bump the revision date; strictly increasing so back-to-back changes are seen."""
        with self.lock:
            self.revision_ms = max(now_ms(), self.revision_ms + 1)

    # --- users -----------------------------------------------------------------------------

    def add_user(
        self,
        email: str,
        password: str,
        *,
        kdf_iterations: int = crypto.MIN_PBKDF2_ITERATIONS,
        name: str | None = None,
        client_secret: str | None = None,
    ) -> User:
        email = email.strip().lower()  # Vaultwarden stores lower-cased mail; it is also the salt
        keys = crypto.make_account_keys(email, password, kdf_iterations)
        user = User(email, password, kdf_iterations, keys, name or email.split("@")[0])
        if client_secret is not None:
            user.client_secret = client_secret
        with self.lock:
            if self.user_by_email(email) is not None:
                raise ValueError(f"user {email} exists")
            self.users[user.id] = user
            self.touch()
        return user

    def user_by_email(self, email: str) -> User | None:
        wanted = email.strip().lower()
        with self.lock:
            return next((u for u in self.users.values() if u.email == wanted), None)

    # --- organizations ---------------------------------------------------------------------

    def add_org(self, name: str, owner: User | None = None) -> Organization:
        org = Organization(name, crypto.SymmetricKey.generate())
        with self.lock:
            self.orgs[org.id] = org
            if owner is not None:
                self.add_member(org, owner, Role.OWNER)
            self.touch()
        return org

    def add_member(
        self,
        org: Organization,
        user: User,
        role: Role = Role.USER,
        *,
        collections: Iterable[Collection] | None = None,
    ) -> Membership:
        """``collections=None`` gives access to all collections (Vaultwarden's access_all)."""
        wrapped = crypto.rsa_wrap(org.key.raw, user.keys.public_key)
        member = Membership(user.id, Role(role), wrapped, access_all=collections is None)
        if collections is not None:
            member.collection_ids = {c.id for c in collections}
        with self.lock:
            org.members[user.id] = member
            self.touch()
        return member

    def memberships(self, user: User) -> list[tuple[Organization, Membership]]:
        with self.lock:
            return [(o, o.members[user.id]) for o in self.orgs.values() if user.id in o.members]

    # --- collections -----------------------------------------------------------------------

    def add_collection(self, org: Organization, name: str) -> Collection:
        col = Collection(org.id, name)
        with self.lock:
            self.collections[col.id] = col
            self.touch()
        return col

    def rename_collection(self, col: Collection, name: str) -> None:
        with self.lock:
            col.name = name
            self.touch()

    def delete_collection(self, col: Collection) -> None:
        """Like Vaultwarden: the items stay in the organization, only the link goes."""
        with self.lock:
            self.collections.pop(col.id, None)
            for item in self.items.values():
                if col.id in item.collection_ids:
                    item.collection_ids.remove(col.id)
                    item.revised_ms = now_ms()
            for org in self.orgs.values():
                for member in org.members.values():
                    member.collection_ids.discard(col.id)
            self.touch()

    def visible_collections(self, user: User) -> list[Collection]:
        with self.lock:
            seen: list[Collection] = []
            for org, member in self.memberships(user):
                seen += [
                    c
                    for c in self.collections.values()
                    if c.org_id == org.id and (member.full_access or c.id in member.collection_ids)
                ]
            return seen

    # --- items -----------------------------------------------------------------------------

    def add_item(
        self,
        collection: Collection,
        name: str,
        *,
        notes: str | None = None,
        fields: FieldsArg = (),
        login: Login | None = None,
    ) -> Item:
        """A secure note, or a login when ``login`` is given."""
        item = Item(collection.org_id, [collection.id], name, notes, _fields(fields), login)
        with self.lock:
            self.items[item.id] = item
            self.touch()
        return item

    def update_item(
        self,
        item: Item,
        *,
        name: str | None = None,
        notes: str | None = None,
        fields: FieldsArg | None = None,
    ) -> None:
        with self.lock:
            if name is not None:
                item.name = name
            if notes is not None:
                item.notes = notes
            if fields is not None:
                item.fields = _fields(fields)
            self._revised(item)

    def set_field(self, item: Item, name: str, value: str, type: FieldType | None = None) -> None:
        """Change the first field called ``name`` (keeping its type unless given), or append one."""
        with self.lock:
            existing = next((f for f in item.fields if f.name == name), None)
            if existing is None:
                item.fields.append(Field(name, value, type or FieldType.TEXT))
            else:
                existing.value = value
                existing.type = type if type is not None else existing.type
            self._revised(item)

    def delete_item(self, item: Item) -> None:
        with self.lock:
            self.items.pop(item.id, None)
            self.touch()

    def _revised(self, item: Item) -> None:
        self.touch()
        item.revised_ms = self.revision_ms

    def visible_items(self, user: User) -> list[tuple[Item, list[str]]]:
        """Items the user can see, each with the collection ids shown to that user."""
        with self.lock:
            visible_cols = {c.id for c in self.visible_collections(user)}
            full_orgs = {o.id for o, m in self.memberships(user) if m.full_access}
            out = []
            for item in self.items.values():
                shown = [c for c in item.collection_ids if c in visible_cols]
                if shown or item.org_id in full_orgs:
                    out.append((item, shown))
            return out
