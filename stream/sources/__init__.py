"""Sources: what a user points scenecast at (camera, URL, file) and the readers that turn it
into frames."""
