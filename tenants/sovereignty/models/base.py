"""Helpers shared by the sovereignty models."""


def choices_of(values):
    """Django choices whose stored value is also the label."""
    return [(v, v) for v in values]
