"""The export bundle's format: one JSON Lines file, written by ``audit export``, read by ``audit verify``.

In order: a header ``{"t": "bundle", "format": "colibri-audit", "version": 1, "host", "time"}``;
every host's public keys ``{"t": "key", "host", "key", "created_at", "retired_at", "endorsement"}``
(``key`` a verifier key, ``endorsement`` ``{"by", "time", "signature"}``: the old key's signature
over the new one); checkpoints ``{"t": "checkpoint", "note"}`` (host, size); cosignatures
``{"t": "cosignature", "host", "size", "root", "witness", "key_id", "time", "signature"}``; then
each host's entries, by seq, each line exactly its canonical body (the bytes its leaf hashes);
last ``{"t": "export", "host", "time", "heads": {host: [size, root]}, "key_id", "signature"}``: the
exporting host's signature over every host's tree as exported (a file cut short fails).
"""

FORMAT = "colibri-audit"
VERSION = 1
MAX_RECORD = 64 * 1024
ENTRY_START = b'{"action":'
