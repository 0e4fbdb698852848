"""Runs: the store, the checks before a run, the job queue, the runner and experiments.

Everything that gives a run its life cycle (queued, running, finished) and its place on disk;
the pages read runs only through here.
"""
