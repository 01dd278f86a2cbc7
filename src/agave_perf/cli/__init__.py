"""The command line: one thin module per command group, registered in :mod:`.main`."""
