"""The Redis contract that capture, workers and servers share: key names, entries and their
validation, the source-name rule, the Lua scripts, cluster support, the Redis clock and
reconnect backoff. Imports nothing else of ours; ``stream`` imports it, never the rest of
``worker``."""
