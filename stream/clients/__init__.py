"""Small clients of a deployment: ``listen`` (captions as they arrive), ``status`` and
``forget``."""
