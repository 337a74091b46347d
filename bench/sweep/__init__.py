"""Sweeps of training runs as cells (`cells`), computed here or on a Dask cluster
(`executors`): the accuracy sweeps and the claims run through both."""
