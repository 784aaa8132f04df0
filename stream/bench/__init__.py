"""The ``scenecast bench`` benchmarks: the captioner, recorded video, the pipeline through
Redis and the websocket server. Figures go to docs/benchmarks.md."""
