"""The hosts of a hive (issue 11).

- ``enrol``: ``colibri hosts add|list|show|check|remove`` on the hosts table (``HostService``);
- ``ops``: the registry of what a remote host does when the orchestrator asks over SSH
  (``register``; ``ping`` and ``version`` here, the control plane's lifecycle ops beside them);
- ``serve``: the ``colibri remote serve`` loop that answers those requests on a kept channel.
"""
