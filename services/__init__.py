"""Deployable processes of kosmos-promote; each sub-package is one, and stays thin over `shared`."""
