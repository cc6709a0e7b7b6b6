"""The agent lifecycle, in one place: a tenant's row becomes a running agent in its jail, and back.

- ``layout``: where colibri puts things in a jail and on the host, and the tenant's lifecycle lock;
- ``pipeline``: spawn's resumable steps (``SpawnService``; spawn-local, the chain without a jail,
  too), with ``allocation`` (the tenant's host ids and jail IP);
- ``mother``: the mother skill inside the jail: started once, ready only after its ready line;
- ``adoption``: a jail colibri did not make, taken in (checked first, recorded) and handed back;
- ``operations``: start, stop, destroy and release a spawned agent (``AgentService``);
- ``reconcile``: the store compared with the backend, and the safe repairs;
- ``placement`` (where a tenant lives, how a host is reached), ``routing`` (``Lifecycle``: each
  command to the tenant's host), ``remote_host`` (a host's ops over its link) and
  ``reconcile_hosts`` (a reconcile over many hosts).

Every operation on one tenant holds ``layout.agent_lock``; every state change of a tenant goes
through ``TenantRepo.change`` (checked against domain's state machine).
"""
