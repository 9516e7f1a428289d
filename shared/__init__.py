"""The shared core: feature definitions and executors, example data, model registry, blue-green
deployment, consistency checks and local servers. ``shared`` never imports ``patterns``."""
