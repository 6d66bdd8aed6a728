"""Package and export-format versions, in one place."""

__version__ = "0.1.0"

# Bumped whenever the manifest schema, a graph's inputs/outputs or the cache layout change in a way
# an older runtime cannot read. The runtime refuses any value outside READABLE_FORMAT_VERSIONS.
# 2: export.attention ("standard" | "gqa": the fused decoder with its own inputs and an in-place cache).
#    Version 1 directories are read as attention "standard", which they are.
EXPORT_FORMAT = "qasr-export"
EXPORT_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
