"""The ``sandbox`` jail backend (Linux bubblewrap): ``Sandbox`` is in ``backend.py``; its parts are
``bwrap`` (the argv), ``launcher`` (the user namespace's set-up), ``mounts``, ``cgroups``, ``seccomp``,
``userns`` and ``procs``.  This file imports nothing: a submodule's import runs it first, so anything
here that imported a submodule would be an import loop (tests/unit/test_no_import_cycle.py)."""
