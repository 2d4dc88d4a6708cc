"""Feast feature repository: declarations only (entities, sources, views, services).

Importing this package imports Feast (several seconds): only the code that talks to the
store does.
"""
