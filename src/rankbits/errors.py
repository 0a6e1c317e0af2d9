"""Errors every layer raises (config, registries, methods), in a module all of them import."""
from __future__ import annotations


class ConfigError(ValueError):
    """A study configuration that cannot be run; the message names the key."""
