"""Package and export-format versions, in one place."""

__version__ = "0.1.0"

# Bumped whenever the manifest schema, a graph's inputs/outputs or the cache layout change in a way
# an older runtime cannot read. The runtime refuses any other value.
EXPORT_FORMAT = "qasr-export"
EXPORT_FORMAT_VERSION = 1
