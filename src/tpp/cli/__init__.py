"""Command-line interface: ``tpp <command> ...`` (see :mod:`tpp.cli.main`).

A thin layer over the library: every command module parses options, calls library functions
and prints results; errors are :class:`tpp.errors.TPPError` shown as one line.
"""
