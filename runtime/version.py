"""Package and export-format versions, in one place."""

__version__ = "0.1.0"

# Bumped whenever the manifest schema, a graph's inputs/outputs or the cache layout change in a way
# an older runtime cannot read. The runtime refuses any value outside READABLE_FORMAT_VERSIONS.
# 2: export.attention ("standard" | "gqa": the fused decoder with its own inputs and an in-place cache).
#    Version 1 directories are read as attention "standard", which they are.
EXPORT_FORMAT = "qasr-export"
# 3: the fused decoder is built node by node (no run-time shape arithmetic) and takes `last_token_index`;
#    export.requires names the oldest ONNX Runtime it runs on. Version 2 standard exports are read as they
#    are; version 2 fused exports are refused with a line asking for a new export.
EXPORT_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
