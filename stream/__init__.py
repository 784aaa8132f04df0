"""Sources, capture, the websocket server, subtitle writers and the ``scenecast`` CLI."""
