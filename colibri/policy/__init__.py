"""The spawn policy (issue 14): its model and its rules, pure (no I/O, no store, no clock)."""
