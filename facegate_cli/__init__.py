"""``facegate``: the command line for the facegate API (see ``facegate_cli.main``)."""
