"""Errors about the user's input, shared by the modules that read it."""


class DataError(ValueError):
    """Input data that cannot be used as preference pairs; the message names the field and the fix."""
