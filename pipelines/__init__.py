"""End-to-end runs behind the `cobranza` command line, and the portfolio simulator.

Only this package and `serving` read and write files, stores and registries.
"""
