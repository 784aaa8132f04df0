"""The capture process: read a source, sample frames, publish them to ``frames:{src}``."""
