"""The ``scenecast`` command line: it declares the flags and calls one function per command.
Nothing imports it."""
