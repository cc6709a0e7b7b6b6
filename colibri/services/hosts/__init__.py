"""The hosts of a hive (issue 11).

- ``enrol``: ``colibri hosts add|list|show|check|remove`` on the hosts table (``HostService``);
- ``ops``: the registry of what a remote host does when the orchestrator asks over SSH
  (``register``; ``ping`` and ``version`` there);
- ``remote_ops``: the control plane's lifecycle ops a host serves for its own tenants
  (spawn, start, stop, destroy, release, reconcile, write_env, show);
- ``serve``: the ``colibri remote serve`` loop that answers those requests on a kept channel.
"""
