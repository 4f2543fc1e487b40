"""The label-images pipeline: options, wiring and command line."""
