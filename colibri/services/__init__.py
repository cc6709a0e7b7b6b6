"""Services: the business rules.  They take adapters and a Store, raise ColibriError, never print."""
