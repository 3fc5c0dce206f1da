"""Integrations with other engines and tools; each imports its engine only when used."""
