"""Adapters: the only code that talks to the outside (bastille, bw, bubblewrap, ssh, keyring, host)."""
