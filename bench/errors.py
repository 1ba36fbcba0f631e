"""Errors a user can act on: each names the field, the value and what would be valid."""


class ConfigError(ValueError):
    """A bad config value, raised before any model weights load."""

    def __init__(self, field: str, value: object, valid: str):
        self.field, self.value, self.valid = field, value, valid
        super().__init__(f"{field}={value!r} is not valid: {valid}")


class AssetError(RuntimeError):
    """An offline asset could not be fetched or prepared."""
