"""The colibri command line: the app and ``main()`` are in ``colibri.cli.app``; each command group
is a module here (tenants, jails, vault, hive, daemon, config).  This package file imports nothing,
so a command module's ``from colibri.cli import context, output`` is no import cycle."""
