"""The websocket server: ``/ws`` fan-out of captions, the viewer page, ``/healthz``,
``/metrics``, transcripts, access control and TLS."""
