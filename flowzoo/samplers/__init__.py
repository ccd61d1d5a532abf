"""Placeholder package; see the open issues for what lands here."""
