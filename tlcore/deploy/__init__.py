"""Deploy: load a finished run's model once per process, classify with it, and export it.

Exports are checked against the studio's own model on the run's test images before they ship.
"""
