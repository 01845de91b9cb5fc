"""Packaged cluster configs: `local.yaml` is what `rayctl up` uses when given no file."""
