"""The audit trail (issue 12): what an entry is, how it is encoded and hashed, who it is for.

Pure code (no store, no I/O): ``canonical`` (RFC 8785 bytes), ``origin`` (the host and actor a
state change is recorded under), ``entry`` (the entry's fields and its leaf hash).
"""
