"""The hive daemon: HTTP/1.1 + JSON on Unix sockets (admin and one per tenant), liveness, tasks."""
