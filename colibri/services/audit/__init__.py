"""The audit trail's services (issue 12): ``signer`` (this host's checkpoints, cosigning the other
hosts', key rotation), ``export`` (the bundle ``audit verify`` checks offline), ``query`` (``audit
log``, ``audit prove``, ``audit keys``).  The offline verifier itself is ``colibri.audit.verify``:
it must not import the store, so it lives beside the pure audit code.
"""
