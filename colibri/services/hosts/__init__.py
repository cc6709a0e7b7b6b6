"""Many hosts: what a host serves to the orchestrator over SSH (remote_ops)."""
