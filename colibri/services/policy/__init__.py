"""The spawn policy's service (issue 14): decide and reserve in one transaction, every decision
audited before it acts (service.py); the operator's show, set, global switch, decisions (admin.py)."""
