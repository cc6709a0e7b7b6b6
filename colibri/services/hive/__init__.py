"""The hive's rules: agents, tasks, capability routing, leases and retries (issue 5).

``HiveService`` (``service.py``) is the one object the daemon holds; its parts are ``rules`` (value
types such as Scope, Policy, AgentRef; input checks), ``views`` (the public JSON), ``ledger`` (each
tenant's usage, retention), ``tasks``, ``agents`` and ``hosts`` (the rules on each table).  This
file imports nothing: a submodule's import runs it first, so anything here that imported a submodule would be an
import loop (tests/unit/test_no_import_cycle.py).
"""
