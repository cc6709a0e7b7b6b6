"""Response bodies in Vaultwarden's shapes (identity.rs, core/*.rs, db/models/*.rs ``to_json``).

Only the crypto-relevant values are real; the many flags are copied from Vaultwarden's
defaults because bw 2026.9.0 was run against them and accepted them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from . import crypto
from .store import Collection, Field, Item, Login, Membership, Organization, Role, User, Vault

Json = dict[str, Any]

SERVER_VERSION = "2026.6.0"  # what Vaultwarden 46d7110 advertises; clients gate features on it


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def api_error(message: str, error: str = "") -> Json:
    """Vaultwarden's ApiErrorResponse. ``error`` carries the OAuth code bw keys on.

    Vaultwarden itself sends ``"error": ""`` for a wrong API key; the official server sends
    ``invalid_client``, which is what makes bw print "client_id or client_secret is incorrect".
    """
    return {
        "message": message,
        "validationErrors": {"": [message]},
        "errorModel": {"message": message, "object": "error"},
        "error": error,
        "error_description": error,
        "exceptionMessage": None,
        "exceptionStackTrace": None,
        "innerExceptionMessage": None,
        "object": "error",
    }


def not_found() -> Json:
    return {
        "error": {
            "code": 404,
            "reason": "Not Found",
            "description": "The requested resource could not be found.",
        }
    }


def prelogin(user: User | None) -> Json:
    # Like Vaultwarden, an unknown mail gets the default KDF instead of an error (no user probing).
    iterations = user.kdf_iterations if user else 600_000
    kdf = crypto.KDF_TYPE_PBKDF2
    return {
        "kdf": kdf,
        "kdfIterations": iterations,
        "kdfMemory": None,
        "kdfParallelism": None,
        "kdfSettings": {"iterations": iterations, "kdfType": kdf, "memory": None, "parallelism": None},
        "salt": None,
    }


def config(base_url: str) -> Json:
    return {
        "version": SERVER_VERSION,
        "gitHash": None,
        "server": {"name": "Vaultwarden", "url": "https://github.com/dani-garcia/vaultwarden"},
        "settings": {"disableUserRegistration": True, "suppressOnboardingInterstitials": True},
        "environment": {
            "vault": base_url,
            "api": f"{base_url}/api",
            "identity": f"{base_url}/identity",
            "notifications": f"{base_url}/notifications",
            "sso": "",
            "cloudRegion": None,
        },
        "push": {"pushTechnology": 0, "vapidPublicKey": None},
        # Empty on purpose: e.g. ForceUpdateKDFSettings would make bw rewrite the KDF.
        "featureStates": {},
        "communication": None,
        "object": "config",
    }


def _master_password_unlock(user: User, pascal: bool) -> Json:
    # The token response uses PascalCase, sync uses camelCase (as in Vaultwarden 2025-12+).
    kdf = {
        "KdfType": crypto.KDF_TYPE_PBKDF2,
        "Iterations": user.kdf_iterations,
        "Memory": None,
        "Parallelism": None,
    }
    body = {
        "Kdf": kdf,
        "MasterKeyEncryptedUserKey": user.keys.wrapped_user_key,
        "MasterKeyWrappedUserKey": user.keys.wrapped_user_key,
        "Salt": user.email,
    }
    return body if pascal else _camel(body)


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    return value


def token(user: User, access_token: str, expires_in: int, refresh_token: str | None, scope: str) -> Json:
    body: Json = {
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "Key": user.keys.wrapped_user_key,
        "PrivateKey": user.keys.wrapped_private_key,
        "Kdf": crypto.KDF_TYPE_PBKDF2,
        "KdfIterations": user.kdf_iterations,
        "KdfMemory": None,
        "KdfParallelism": None,
        "ResetMasterPassword": False,
        "ForcePasswordReset": False,
        "MasterPasswordPolicy": {"Object": "masterPasswordPolicy"},
        "scope": scope,
        "AccountKeys": {
            "publicKeyEncryptionKeyPair": {
                "wrappedPrivateKey": user.keys.wrapped_private_key,
                "publicKey": user.keys.public_key_b64,
                "Object": "publicKeyEncryptionKeyPair",
            },
            "Object": "privateKeys",
        },
        "UserDecryptionOptions": {
            "HasMasterPassword": True,
            "MasterPasswordUnlock": _master_password_unlock(user, pascal=True),
            "Object": "userDecryptionOptions",
        },
    }
    # Vaultwarden sends a refresh token only for the password grant; API-key clients re-login.
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body


def refreshed_token(access_token: str, expires_in: int, refresh_token: str, scope: str) -> Json:
    return {
        "refresh_token": refresh_token,
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "scope": scope,
    }


def profile_org(org: Organization, member: Membership) -> Json:
    return {
        "id": org.id,
        "identifier": None,
        "name": org.name,
        "seats": 20,
        "maxCollections": None,
        "usersGetPremium": True,
        "use2fa": True,
        "useDirectory": False,
        "useEvents": False,
        "useGroups": False,
        "useTotp": True,
        "useScim": False,
        "usePolicies": True,
        "useApi": True,
        "selfHost": True,
        "hasPublicAndPrivateKeys": False,
        "resetPasswordEnrolled": False,
        "useResetPassword": False,
        "ssoBound": False,
        "useSso": False,
        "useKeyConnector": False,
        "useSecretsManager": False,
        "usePasswordManager": True,
        "useCustomPermissions": True,
        "useActivateAutofillPolicy": False,
        "useAdminSponsoredFamilies": False,
        "useRiskInsights": False,
        "useDisableSMAdsForUsers": True,
        "useInviteLinks": False,
        "useMyItems": False,
        "useOrganizationDomains": False,
        "usePam": False,
        "usePhishingBlocker": False,
        "organizationUserId": member.id,
        "providerId": None,
        "providerName": None,
        "providerType": None,
        "familySponsorshipFriendlyName": None,
        "familySponsorshipAvailable": False,
        "productTierType": 3,
        "keyConnectorEnabled": False,
        "keyConnectorUrl": None,
        "familySponsorshipLastSyncDate": None,
        "familySponsorshipValidUntil": None,
        "familySponsorshipToDelete": None,
        "accessSecretsManager": False,
        "limitCollectionCreation": True,
        "limitCollectionDeletion": True,
        "limitItemDeletion": False,
        "allowAdminAccessToAllCollectionItems": True,
        "userIsManagedByOrganization": False,
        "userIsClaimedByOrganization": False,
        "permissions": {
            "accessEventLogs": False,
            "accessImportExport": False,
            "accessReports": False,
            "createNewCollections": False,
            "editAnyCollection": False,
            "deleteAnyCollection": False,
            "manageGroups": False,
            "managePolicies": False,
            "manageSso": False,
            "manageUsers": False,
            "manageResetPassword": False,
            "manageScim": False,
        },
        "maxStorageGb": 32767,
        "userId": member.user_id,
        "key": member.wrapped_org_key,  # type-4: the org key under this member's public key
        "status": 2,  # confirmed
        "type": int(member.role),  # bw picks the org-collections endpoint from this
        "enabled": True,
        "object": "profileOrganization",
    }


def profile(vault: Vault, user: User) -> Json:
    return {
        "_status": 0,
        "accountKeys": {
            "publicKeyEncryptionKeyPair": {
                "wrappedPrivateKey": user.keys.wrapped_private_key,
                "publicKey": user.keys.public_key_b64,
                "signedPublicKey": None,
                "object": "publicKeyEncryptionKeyPair",
            },
            "securityState": None,
            "signatureKeyPair": None,
            "object": "privateKeys",
        },
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "emailVerified": True,
        "premium": True,
        "premiumFromOrganization": False,
        "culture": "en-US",
        "twoFactorEnabled": False,
        "key": user.keys.wrapped_user_key,
        "privateKey": user.keys.wrapped_private_key,
        "securityStamp": user.security_stamp,
        "organizations": [profile_org(org, m) for org, m in vault.memberships(user)],
        "providers": [],
        "providerOrganizations": [],
        "forcePasswordReset": False,
        "avatarColor": None,
        "usesKeyConnector": False,
        "creationDate": iso(user.created_ms),
        "object": "profile",
    }


def collection(col: Collection, key: crypto.SymmetricKey) -> Json:
    return {
        "externalId": None,
        "id": col.id,
        "organizationId": col.org_id,
        "name": crypto.encrypt_str(col.name, key),
        "type": 0,
        "defaultUserCollectionEmail": None,
        "object": "collection",
    }


def collection_details(col: Collection, key: crypto.SymmetricKey, member: Membership) -> Json:
    body = collection(col, key)
    body.update(
        object="collectionDetails",
        readOnly=False,
        hidePasswords=False,
        manage=member.full_access and member.role != Role.USER,
    )
    return body


def _enc(text: str | None, key: crypto.SymmetricKey) -> str | None:
    return None if text is None else crypto.encrypt_str(text, key)


def _field(f: Field, key: crypto.SymmetricKey) -> Json:
    return {"name": _enc(f.name, key), "value": _enc(f.value, key), "type": int(f.type), "linkedId": None}


def _login(login: Login, key: crypto.SymmetricKey) -> Json:
    uris = [{"uri": _enc(u, key), "uriChecksum": None, "match": None} for u in login.uris]
    return {
        "username": _enc(login.username, key),
        "password": _enc(login.password, key),
        "passwordRevisionDate": None,
        "totp": None,
        "uris": uris,
        "uri": uris[0]["uri"] if uris else None,
        "fido2Credentials": [],
    }


def cipher(item: Item, collection_ids: list[str], key: crypto.SymmetricKey) -> Json:
    body: Json = {
        "object": "cipherDetails",
        "id": item.id,
        "type": int(item.type),
        "creationDate": iso(item.created_ms),
        "revisionDate": iso(item.revised_ms),
        "deletedDate": None,
        "reprompt": 0,
        "organizationId": item.org_id,
        "key": None,  # no per-cipher key: strings are under the org key directly
        "attachments": None,
        "organizationUseTotp": True,
        "collectionIds": collection_ids,
        "name": _enc(item.name, key),
        "notes": _enc(item.notes, key),
        "fields": [_field(f, key) for f in item.fields],
        "passwordHistory": [],
        "login": None,
        "secureNote": None,
        "card": None,
        "identity": None,
        "sshKey": None,
        "bankAccount": None,
        "driversLicense": None,
        "passport": None,
        "folderId": None,
        "favorite": False,
        "archivedDate": None,
        "edit": True,
        "viewPassword": True,
        "permissions": {"delete": True, "restore": True},
    }
    if item.login is not None:
        body["login"] = _login(item.login, key)
    else:
        body["secureNote"] = {"type": 0}
    return body


def sync(vault: Vault, user: User) -> Json:
    with vault.lock:
        orgs = {org.id: (org, m) for org, m in vault.memberships(user)}
        collections = [
            collection_details(c, orgs[c.org_id][0].key, orgs[c.org_id][1]) for c in vault.visible_collections(user)
        ]
        ciphers = [cipher(item, cols, orgs[item.org_id][0].key) for item, cols in vault.visible_items(user)]
        return {
            "profile": profile(vault, user),
            "folders": [],
            "collections": collections,
            "policies": [],
            "ciphers": ciphers,
            "domains": None,
            "sends": [],
            "userDecryption": {
                "masterPasswordUnlock": _master_password_unlock(user, pascal=False),
                "userKeyId": user.user_key_id,
            },
            "object": "sync",
        }


def collection_list(cols: list[Collection], vault: Vault) -> Json:
    with vault.lock:
        data = [collection(c, vault.orgs[c.org_id].key) for c in cols]
    return {"data": data, "object": "list", "continuationToken": None}
