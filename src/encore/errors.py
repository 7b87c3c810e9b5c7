"""Errors about the user's input, shared by the modules that read it."""


class SettingError(ValueError):
    """A setting that cannot work; the message names the field, its value and the fix (checked before a run starts,
    :mod:`encore.run.settings`, or by the part that reads it)."""


class DataError(ValueError):
    """Input data that cannot be used as preference pairs; the message names the field and the fix."""


def shown(value: object) -> str:
    """A value as a message shows it: ``5``, ``'maybe'``, ``1.5`` (a numpy scalar as the Python value it holds)."""
    return repr(value.item() if hasattr(value, "item") and getattr(value, "shape", None) == () else value)
