"""Tensor and file names of the exported graphs: the one place they are spelled.

Exporters, the manifest and the runtime all read these; see docs/decisions/ for why they look so.
"""

# Audio encoder graph: log-mel features in, encoder hidden states out (after ln_post).
ENCODER = "encoder"
INPUT_FEATURES = "input_features"          # float [batch, mel_bins, frames]; frames a multiple of the chunk
FEATURE_LENGTHS = "feature_lengths"        # int64 [batch]: valid mel frames per row
AUDIO_HIDDEN = "audio_hidden_states"       # float [batch, tokens, d_model]; rows padded past their length

# Projector graph: encoder states to decoder-width audio embeddings.
PROJECTOR = "projector"
AUDIO_EMBEDS = "audio_embeds"              # float [batch, tokens, text_hidden]

# Decoder graph: one graph serves prefill (T = prompt length) and the step (T = 1).
DECODER = "decoder"
INPUT_IDS = "input_ids"                    # int64 [batch, T]
DECODER_AUDIO_EMBEDS = AUDIO_EMBEDS        # float [batch, T, text_hidden]; read where input_ids == audio token
                                           # (the projector's output feeds the decoder under the same name)
POSITION_IDS = "position_ids"              # int64 [batch, T]
PAST_MASK = "past_mask"                    # bool [batch, capacity]: which cache slots hold real tokens
NEW_MASK = "new_mask"                      # bool [batch, T]: which new tokens are real (left padding is not)
LOGITS = "logits"                          # float32 [batch, vocab], last position only

# The fused decoder (attention "gqa": ONNX Runtime's GroupQueryAttention) differs only in these: no
# position_ids or masks (rows are right padded, positions are cache slots), a cache written in place,
# the next token chosen inside the graph (see docs/decisions/, "Fused attention").
SEQLENS_K = "seqlens_k"                    # int32 [batch]: each row's total length (cache + new) minus one
TOTAL_SEQUENCE_LENGTH = "total_sequence_length"  # int32 [1]: T for a prompt, else max(seqlens_k) + 1
LAST_TOKEN_INDEX = "last_token_index"      # int64 [batch]: each row's last real token in the flattened [batch * T]
LOGIT_BIAS = "logit_bias"                  # float32 [vocab]: added to every row's logits (e.g. EOS suppressed)
NEXT_TOKEN = "next_token"                  # int64 [batch]: argmax of the biased logits, at each row's last token

# Aligner graph (Qwen3-ForcedAligner): the decoder without a cache over the whole sequence (audio, then each
# word followed by two <timestamp> slots), its classification head read only at the slots.
ALIGNER = "aligner"
SLOT_POSITIONS = "slot_positions"          # int64 [batch, slots]: where the <timestamp> tokens are
SLOT_LOGITS = "slot_logits"                # float32 [batch, slots, classes]: the head's scores at each slot
SLOT_BINS = "slot_bins"                    # int64 [batch, slots]: their argmax (the time bin)

# Decoder attention kinds (manifest export.attention)
ATTENTION_STANDARD = "standard"
ATTENTION_GQA = "gqa"


def past_key(i: int) -> str:
    return f"past_key_values.{i}.key"


def past_value(i: int) -> str:
    return f"past_key_values.{i}.value"


def present_key(i: int) -> str:
    return f"present.{i}.key"


def present_value(i: int) -> str:
    return f"present.{i}.value"


GRAPHS = (ENCODER, PROJECTOR, DECODER)     # every speech recognition export's graphs, in pipeline order
ALIGNER_GRAPHS = (ENCODER, PROJECTOR, ALIGNER)   # an aligner export's

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
