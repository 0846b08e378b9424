"""Placeholder until the TLS channel handler lands: leaves ``ssl`` untouched."""


def install() -> None:
    """Nothing yet."""
