"""Embedded runtime: settings, the table of services, the `coelho` command."""
