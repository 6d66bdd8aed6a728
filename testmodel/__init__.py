"""The project's trained test model: its checkpoint, speech splits, trainer and run records (testmodel/README.md)."""
