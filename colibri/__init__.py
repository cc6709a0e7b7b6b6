"""colibri: run private AI agents in FreeBSD jails, one tenant per jail and per Vaultwarden collection."""

__version__ = "0.1.0"
