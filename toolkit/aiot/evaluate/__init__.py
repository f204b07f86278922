"""Incident-by-incident evaluation of a detector on recorded installations (SKAB, NAB, generic CSV)."""
