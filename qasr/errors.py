"""User-facing errors: each carries one line that the command-line tools print as is."""


class QasrError(Exception):
    """A problem with the user's input (audio, checkpoint, export directory, options)."""


class AudioError(QasrError):
    """Audio that cannot be transcribed: missing, unreadable, empty or not finite."""


class CheckpointError(QasrError):
    """A directory or hub id that is not a loadable Qwen3-ASR checkpoint."""


class ExportDirError(QasrError):
    """An export directory that this runtime cannot load (missing files, other version, bad checksums)."""
