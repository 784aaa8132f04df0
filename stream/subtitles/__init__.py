"""Recorded video: ``scenecast caption`` turns video files into WebVTT / SRT / JSON lines."""
