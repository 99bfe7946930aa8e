"""The library's error type: one clear message that says what to do; the CLI prints it and exits 1."""


class ResNetLabError(Exception):
    """A user-facing error (bad model name, bad depth, bad data, bad checkpoint, ...)."""
