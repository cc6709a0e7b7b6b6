"""The ``bastille`` jail backend (FreeBSD): ``Bastille`` is in ``backend.py``; its parts are ``core``
(what Bastille provides to its mixins), ``mounts``, ``enforce`` and ``hardening`` (jail(8) parameters,
rctl(8) limits), ``argv`` (every command line it runs).  This file imports nothing: a submodule's
import runs it first, so anything here that imported a submodule would be an import loop
(tests/unit/test_no_import_cycle.py)."""
