"""TFDS builders whose source files the tests write themselves (TFDS wants builders in a package)."""
