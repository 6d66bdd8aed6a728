"""How many audio tokens the encoder makes of a number of mel frames (shared by exporter and runtime)."""


def conv_output_length(frames: int) -> int:
    """Length after the three Conv2d(k3, s2, p1) layers of the audio front end."""
    for _ in range(3):
        frames = (frames - 1) // 2 + 1 if frames > 0 else 0
    return frames


def audio_token_count(frames: int, chunk_frames: int, tokens_per_chunk: int) -> int:
    """Full chunks give tokens_per_chunk each; the partial last chunk what the convolutions leave of it."""
    full, rest = divmod(frames, chunk_frames)
    return full * tokens_per_chunk + conv_output_length(rest)
