"""Provider plug-ins the tests load as `provider: {type: external, module: plugins.<mod>.<Class>}`
(tests/ must be on the path of every process that reads such a config: PYTHONPATH)."""
