"""A synthetic English speech corpus spoken by espeak-ng, for the project's small trained test model.

    python -m testmodel.train.corpus OUT_DIR [--seed 0] [--train 20000] [--eval 140] [--accents 90] [--calibration 48]

Sentences: 2-16 words (2-10 in the splits that ship in the repository, to fit their size budget) drawn
from wordfreq's 1,100 most frequent English words (letters only, plus spelled-out numbers: 1,071),
weighted towards rarer words so the whole vocabulary is spoken; a few training utterances are 20-30 s
of several sentences. Speakers: espeak-ng's English accents x voice variants. Two evaluation splits:
`eval` is spoken by variants that training never hears (with training's accents), `eval_accents` by
whole accents that training never hears (with training's variants). Calibration uses training voices
and its own sentences. Two more training splits: `train_random` (random voices, corpus v3) and
`train_accents` (random accents, corpus v4: training/accents.py) and `train_shifts` (random accents with
vowel shifts, corpus v5). Each utterance gets a random rate and
pitch; most get noise (white, pink, brown or babble of other voices) at a random SNR, some a synthetic
room reverberation. Output: 16 kHz FLAC files and one JSONL manifest per split (`audio`, `text`,
`voice`, `variant`, `rate`, `pitch`, `snr_db`, `noise`, `reverb`).
"""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from qasr.runtime.audio import resample
from qasr.runtime.cli_support import Progress, handle_errors
from qasr.errors import QasrError
from testmodel.train.accents import ACCENT_SPLITS, install_accents, link_espeak_data, random_accents, write_variants

SAMPLE_RATE = 16000
# Corpus v2 (session 7). All of espeak-ng's English accents: 6 for training, 2 held out whole.
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-us-nyc", "en-gb-scotland", "en-gb-x-gbclan")
HELD_OUT_ACCENTS = ("en-029", "en-gb-x-gbcwmd")
# Voice variants that sound like people (the effects are left out: whisper, croak, the robots, klatt
# synthesis, Demonic, Storm, announcer, Tweaky); 24 for training, 6 held out whole.
VARIANTS = ("m1", "m2", "m3", "m4", "m6", "m7", "m8", "f1", "f2", "f4", "f5", "Andy", "Annie", "Lee", "adam",
            "aunty", "belinda", "boris", "david", "john", "linda", "max", "michael", "steph")
# "michael" names no variant file (espeak-ng's is `Michael`; lookup is case-sensitive), so espeak-ng
# speaks its default voice for it without a word: corpus v2 was made so, and the name stays to keep the
# seed reproducing the shipped splits (testmodel/tests/test_training.py checks every other name is a real variant).
DEFAULT_VOICE_ALIAS = "michael"
HELD_OUT_VARIANTS = ("m5", "f3", "Mike", "zac", "robert", "Andrea")
# Random voices (corpus v3): espeak-ng variant files drawn at random, so that training hears voices
# between and beyond the named variants: vocal tract (every formant frequency) scaled 0.8-1.5 (adult
# male to child), base pitch 60-320 Hz, and random formant heights and widths, flutter, voicing and
# roughness. Written to OUT/voices (espeak-ng's own data, linked, plus these files) and named
# random-NNNN; the held-out variants are never copied or consulted.
RANDOM_PREFIX = "random-"
VOICES_DIR = "voices"
RANDOM_VOICES = 200
RANDOM_SCALE = (0.8, 1.5)
RANDOM_PITCH = (60, 320)
NOISES = ("white", "pink", "brown", "babble")
NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
           "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
           "million first second third").split()
TRAIN_LENGTHS = (2, 16)
SHIPPED_LENGTHS = (2, 10)  # shorter sentences keep the shipped splits within the 15 MB audio budget
LONG_SHARE = 0.04          # training utterances of several sentences, 20-30 s
LONG_SECONDS = (20, 30)
RATES = (120, 220)
PITCHES = (20, 80)
BLOCKED = {"sex", "porn", "fuck", "shit", "damn", "hell", "ass", "bitch", "dick", "gay", "nigga", "fucking", "sexy",
           "kill", "killed", "dead", "death", "drug", "drugs", "rape"}


VOCABULARY_FILE = Path(__file__).parent / "data" / "vocabulary.txt"


def vocabulary() -> list[str]:
    """The corpus words, as shipped (training/data/vocabulary.txt): what wordfreq_vocabulary() gave when it
    was written, kept as a file so that the corpus does not change with wordfreq's version and can be made
    where wordfreq is not installed (the GPU machine). testmodel/tests/test_training.py checks the two agree."""
    return VOCABULARY_FILE.read_text().split()


def wordfreq_vocabulary(size: int = 1100) -> list[str]:
    from wordfreq import top_n_list

    words = [w for w in top_n_list("en", size) if w.isascii() and w.isalpha() and w not in BLOCKED]
    # numbers first (in NUMBERS order), then by frequency rank: a fixed order, whatever PYTHONHASHSEED is
    return list(NUMBERS) + [w for w in dict.fromkeys(words) if w not in NUMBERS]


def sentences(count: int, words: list[str], rng: random.Random, exclude: set[str] = frozenset(),
              lengths: tuple[int, int] = TRAIN_LENGTHS) -> list[str]:
    weights = [1.0 / (1 + i) ** 0.5 for i in range(len(words))]
    out, seen = [], set(exclude)
    while len(out) < count:
        sentence = " ".join(rng.choices(words, weights, k=rng.randint(*lengths)))
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


@dataclass(frozen=True)
class Utterance:
    audio: str
    text: str
    voice: str
    variant: str
    rate: int
    pitch: int
    snr_db: float | None
    reverb: bool
    seed: int
    noise: str | None = None       # white, pink, brown, babble (None: clean)
    babble: tuple[tuple[str, str, str], ...] = ()   # (text, voice, variant) of the background talkers
    sentences: tuple[int, ...] = ()  # words per sentence of a long, multi-sentence utterance


def _espeak(*args: str, text: bool = False):
    """espeak-ng's standard output for `args`; one clear error where espeak-ng is not installed."""
    try:
        return subprocess.run(["espeak-ng", *args], capture_output=True, check=True, timeout=60, text=text).stdout
    except FileNotFoundError:
        raise QasrError("espeak-ng is not installed (Debian: apt-get install espeak-ng)") from None


def voice_data(corpus: str | Path | None, voice: str, variant: str) -> str | None:
    """The espeak-ng data directory that speaks voice+variant: the corpus's own for random accents
    (OUT/accents, OUT/shifts) and random voices (OUT/voices), espeak-ng's for the rest (None)."""
    if corpus is None:
        return None
    for kind in ACCENT_SPLITS.values():
        if voice.startswith(kind.prefix):
            return str(Path(corpus) / kind.directory)
    return str(Path(corpus) / VOICES_DIR) if variant.startswith(RANDOM_PREFIX) else None


def speak(text: str, voice: str, variant: str, rate: int, pitch: int, corpus: str | Path | None = None
          ) -> np.ndarray:
    """espeak-ng's speech at 16 kHz; `corpus`: the corpus directory whose installed voices speak the random
    accents and variants (install_voices, install_accents)."""
    import soundfile as sf

    data = voice_data(corpus, voice, variant)
    path = [f"--path={data}"] if data else []
    wav = _espeak(*path, "-v", f"{voice}+{variant}", "-s", str(rate), "-p", str(pitch), "--stdout", text)
    samples, rate_hz = sf.read(io.BytesIO(wav), dtype="float32")
    return resample(samples, rate_hz, SAMPLE_RATE)


def random_variant(name: str, rng: random.Random) -> str:
    """The text of one random espeak-ng variant file (see RANDOM_SCALE, RANDOM_PITCH)."""
    scale = math.exp(rng.uniform(*map(math.log, RANDOM_SCALE)))
    base = math.exp(rng.uniform(*map(math.log, RANDOM_PITCH)))
    lines = ["language variant", f"name {name}", f"pitch {round(base)} {round(base * rng.uniform(1.15, 1.7))}"]
    for k in range(9):
        lines.append(f"formant {k} {round(100 * scale * rng.uniform(0.92, 1.08))} {rng.randint(70, 130)} "
                     f"{rng.randint(70, 150)}")
    lines += [f"flutter {rng.randint(0, 20)}", f"voicing {rng.randint(70, 150)}", f"roughness {rng.randint(0, 4)}",
              f"intonation {rng.randint(1, 4)}"]
    return "\n".join(lines) + "\n"


def random_voices(count: int, seed: int) -> dict[str, str]:
    rng = random.Random(f"random-voices-{seed}")
    return {f"{RANDOM_PREFIX}{i:04d}": random_variant(f"{RANDOM_PREFIX}{i:04d}", rng) for i in range(count)}


def espeak_data() -> Path:
    """Where espeak-ng reads its data (its --version says so)."""
    version = _espeak("--version", text=True)
    where = version.split("Data at:")[-1].strip()
    if "Data at:" not in version or not Path(where, "phontab").is_file():
        raise QasrError(f"cannot find espeak-ng's data directory in its --version output: {version.strip()!r}")
    return Path(where)


def install_voices(out: Path, voices: dict[str, str]) -> Path:
    """OUT/voices/espeak-ng-data: espeak-ng's data (symbolic links) with only `voices` as variants;
    espeak-ng --path=OUT/voices speaks them. (espeak-ng lists at most 349 voices and variants: its
    131 languages leave room for RANDOM_VOICES, not for these plus its own 101 variants and 90 mbrola voices.)"""
    target = out / VOICES_DIR / "espeak-ng-data"
    link_espeak_data(espeak_data(), target, own=("voices",))
    write_variants(target, voices)
    return out / VOICES_DIR


def coloured_noise(length: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """White, pink (power ~ 1/f) or brown (~ 1/f^2) noise, shaped in the frequency domain."""
    white = rng.standard_normal(length)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.maximum(np.fft.rfftfreq(length, 1 / SAMPLE_RATE), 20.0)
    spectrum /= freqs ** (0.5 if colour == "pink" else 1.0)
    return np.fft.irfft(spectrum, length)


def reverberate(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.1, 0.5)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    response[0] = 1.0
    return np.convolve(samples, response / np.abs(response).sum() * 4)[: len(samples) + len(t) // 2]


def degrade(samples: np.ndarray, snr_db: float | None, reverb: bool, rng: np.random.Generator,
            noise: str | None = "white", background: np.ndarray | None = None) -> np.ndarray:
    """Room reverberation, then noise at `snr_db` (coloured noise, or `background`: babble), then a
    random level."""
    if reverb:
        samples = reverberate(samples, rng)
    if snr_db is not None:
        power = float(np.mean(samples ** 2)) or 1e-8
        if background is not None:
            extra = np.resize(background, len(samples))   # reverberation may have lengthened the speech
        else:
            extra = coloured_noise(len(samples), noise or "white", rng)
        extra = extra * np.sqrt(power / ((np.mean(extra ** 2) or 1e-8) * 10 ** (snr_db / 10)))
        samples = samples + extra
    peak = np.abs(samples).max() or 1.0
    return (samples / peak * rng.uniform(0.3, 0.9)).astype(np.float32)


def spoken_form(text: str, sentence_words: tuple[int, ...] = ()) -> str:
    """What espeak-ng reads: the text, with full stops between the sentences of a long utterance (pauses)."""
    if not sentence_words:
        return text
    words, out, at = text.split(), [], 0
    for n in sentence_words:
        out.append(" ".join(words[at:at + n]) + ".")
        at += n
    return " ".join(out)


def _render(job: tuple[Utterance, str]) -> Utterance:
    import soundfile as sf

    utt, out_dir = job
    rng = np.random.default_rng(utt.seed)
    speech = speak(spoken_form(utt.text, utt.sentences), utt.voice, utt.variant, utt.rate, utt.pitch, out_dir)
    background = None
    if utt.noise == "babble":
        talkers = [speak(text, voice, variant, 170, 50, out_dir) for text, voice, variant in utt.babble]
        background = np.zeros(max(len(speech), *(len(t) for t in talkers)))
        for talker in talkers:
            offset = int(rng.integers(0, max(1, len(background) - len(talker) + 1)))
            background[offset:offset + len(talker)] += talker / (np.sqrt(np.mean(talker ** 2)) or 1.0)
    audio = degrade(speech, utt.snr_db, utt.reverb, rng, utt.noise, background)
    sf.write(Path(out_dir) / utt.audio, audio, SAMPLE_RATE, format="FLAC")
    return utt


def _noise(rng: random.Random) -> tuple[str | None, float | None]:
    if rng.random() < 0.25:
        return None, None
    kind = rng.choice(NOISES)
    return kind, round(rng.uniform(5, 20) if kind == "babble" else rng.uniform(8, 35), 1)


def plan(split: str, texts: list[str], combos: list[tuple[str, str]], rng: random.Random,
         long_texts: list[tuple[str, tuple[int, ...]]] = ()) -> list[Utterance]:
    """One utterance per text (and per long text), each with a voice from `combos`, a rate, pitch, noise
    (babble talkers drawn from the same voices and texts) and reverberation."""
    utterances = []
    items = [(t, ()) for t in texts] + list(long_texts)
    for i, (text, sentence_words) in enumerate(items):
        voice, variant = rng.choice(combos)
        noise, snr = _noise(rng)
        babble = tuple((rng.choice(texts), *rng.choice(combos)) for _ in range(rng.randint(3, 5))) \
            if noise == "babble" else ()
        rate = rng.randint(*RATES)
        if sentence_words:  # a long utterance: a rate that makes it last 20-30 s
            rate = min(RATES[1], max(RATES[0], round(len(text.split()) * 60 / rng.uniform(*LONG_SECONDS))))
        utterances.append(Utterance(f"{split}/{i:06d}.flac", text, voice, variant, rate, rng.randint(*PITCHES),
                                    snr, rng.random() < 0.15, rng.getrandbits(31), noise, babble, sentence_words))
    return utterances


def long_texts(count: int, words: list[str], rng: random.Random, exclude: set[str]) -> list[tuple[str, tuple]]:
    """Utterances of several sentences (5-14 words each) lasting about 20-30 s at 150 words a minute."""
    out = []
    for _ in range(count):
        total = int(rng.uniform(*LONG_SECONDS) * 150 / 60)
        parts = []
        while sum(parts) < total:
            parts.append(min(rng.randint(5, 14), max(5, total - sum(parts))))
        text = " ".join(sentences(1, words, rng, exclude, (sum(parts), sum(parts))))
        out.append((text, tuple(parts)))
    return out


# utterances per split (seed 0 ships); train_random: training utterances by random voices (corpus v3),
# train_accents: by random accents (training/accents.py) with training and random variants (corpus v4),
# train_shifts: the same with random accents that also shift vowels (corpus v5)
SIZES = {"train": 20000, "eval": 140, "eval_accents": 90, "calibration": 48, "train_random": 8000,
         "train_accents": 8000, "train_shifts": 8000}


def plan_splits(seed: int = 0, train: int = SIZES["train"], eval_count: int = SIZES["eval"],
                accents: int = SIZES["eval_accents"], calibration: int = SIZES["calibration"],
                train_random: int = SIZES["train_random"], train_accents: int = SIZES["train_accents"],
                train_shifts: int = SIZES["train_shifts"], unseen: frozenset[str] = frozenset()
                ) -> dict[str, list[Utterance]]:
    """Every utterance of every split (text, voice, rate, pitch, noise, seed), without any audio: cheap,
    and exactly what build() renders, so the shipped splits can be checked against the seed.
    `unseen`: sentences the held-out and calibration splits must not use (other seeds' training
    sentences: training_sentences); empty, the draws are the seed's own."""
    rng = random.Random(seed)
    words = vocabulary()
    eval_texts = sentences(eval_count, words, rng, exclude=set(unseen), lengths=SHIPPED_LENGTHS)
    accent_texts = sentences(accents, words, rng, exclude=set(eval_texts) | unseen, lengths=SHIPPED_LENGTHS)
    held = set(eval_texts) | set(accent_texts)
    calib_texts = sentences(calibration, words, rng, exclude=held | unseen, lengths=SHIPPED_LENGTHS)
    held |= set(calib_texts)
    n_long = int(train * LONG_SHARE)
    train_texts = sentences(train - n_long, words, rng, exclude=held, lengths=TRAIN_LENGTHS)
    train_long = long_texts(n_long, words, rng, held)
    train_combos = [(a, v) for a in ACCENTS for v in VARIANTS]
    splits = {"train": plan("train", train_texts, train_combos, rng, train_long),
              "eval": plan("eval", eval_texts, [(a, v) for a in ACCENTS for v in HELD_OUT_VARIANTS], rng),
              "eval_accents": plan("eval_accents", accent_texts,
                                   [(a, v) for a in HELD_OUT_ACCENTS for v in VARIANTS], rng),
              "calibration": plan("calibration", calib_texts, train_combos, rng)}
    voices = tuple(random_voices(RANDOM_VOICES, seed))
    if train_random:  # corpus v3
        splits["train_random"] = _extra_split("train_random", train_random, [(a, v) for a in ACCENTS for v in voices],
                                              seed, words, held)
    counts = {"train_accents": train_accents, "train_shifts": train_shifts}
    for split, kind in ACCENT_SPLITS.items():  # corpus v4, v5
        if counts[split]:
            combos = [(a, v) for a in random_accents(kind.count, seed, kind.shifts) for v in VARIANTS + voices]
            splits[split] = _extra_split(split, counts[split], combos, seed, words, held)
    return splits


def training_sentences(seed: int) -> frozenset[str]:
    """Every sentence of seed `seed`'s training splits at their default sizes (what --more-corpus reads):
    a larger held-out set for a model trained on these seeds must not use them."""
    return frozenset(u.text for name, split in plan_splits(seed).items() if name in TRAIN_SPLITS for u in split)


def _extra_split(name: str, count: int, combos: list[tuple[str, str]], seed: int, words: list[str],
                 held: set[str]) -> list[Utterance]:
    """A training split added after corpus v2, on its own random stream (its name and the seed), so that
    adding it leaves every earlier split what the seed made: training sentence lengths, 4% long utterances."""
    rng = random.Random(f"{name.replace('_', '-')}-{seed}")
    n_long = int(count * LONG_SHARE)
    texts = sentences(count - n_long, words, rng, exclude=held, lengths=TRAIN_LENGTHS)
    return plan(name, texts, combos, rng, long_texts(n_long, words, rng, held))


SPLITS = ("train", "eval", "eval_accents", "calibration", "train_random", "train_accents", "train_shifts")
TRAIN_SPLITS = ("train", "train_random", "train_accents", "train_shifts")  # what the trainer reads


def build(out: Path, seed: int = 0, train: int = SIZES["train"], eval_count: int = SIZES["eval"],
          accents: int = SIZES["eval_accents"], calibration: int = SIZES["calibration"], workers: int = 2,
          progress=print, only: tuple[str, ...] = SPLITS, train_random: int = SIZES["train_random"],
          train_accents: int = SIZES["train_accents"], train_shifts: int = SIZES["train_shifts"],
          force: bool = False, unseen: frozenset[str] = frozenset()) -> dict[str, Path]:
    splits = plan_splits(seed, train, eval_count, accents, calibration, train_random, train_accents, train_shifts,
                         unseen)
    there = [name for name in splits if name in only and (out / f"{name}.jsonl").exists()]
    if there and not force:
        raise QasrError(f"{out} already has the split(s) {', '.join(there)}; add --force to render them again")
    if "train_random" in splits and "train_random" in only:
        install_voices(out, random_voices(RANDOM_VOICES, seed))
    for split, kind in ACCENT_SPLITS.items():
        if split in splits and split in only:
            install_accents(out, espeak_data(), random_accents(kind.count, seed, kind.shifts), VARIANTS,
                            random_voices(RANDOM_VOICES, seed), kind.directory)
    manifests = {}
    with ProcessPoolExecutor(workers) as pool:
        for name, utterances in splits.items():
            if name not in only:
                continue
            (out / name).mkdir(parents=True, exist_ok=True)
            done = []
            for i, utt in enumerate(pool.map(_render, [(u, str(out)) for u in utterances], chunksize=16), 1):
                done.append(utt)
                if i % 500 == 0 or i == len(utterances):
                    progress(f"{name}: {i}/{len(utterances)}")
            manifests[name] = out / f"{name}.jsonl"
            manifests[name].write_text("".join(json.dumps(asdict(u)) + "\n" for u in done))
    return manifests


def split_report(manifests: dict[str, Path]) -> dict:
    """Disjointness of the splits (accents, variants, sentences) and how much vocabulary they share."""
    rows = {name: [json.loads(l) for l in path.read_text().splitlines()] for name, path in manifests.items()}
    accents = {n: {r["voice"] for r in rs} for n, rs in rows.items()}
    variants = {n: {r["variant"] for r in rs} for n, rs in rows.items()}
    texts = {n: {r["text"] for r in rs} for n, rs in rows.items()}
    words = {n: {w for t in ts for w in t.split()} for n, ts in texts.items()}
    report = {"sentence_overlap": {f"{a}/{b}": len(texts[a] & texts[b]) for a in texts for b in texts if a < b},
              "vocabulary": len(set().union(*words.values()))}
    trained = [n for n in TRAIN_SPLITS if n in rows]
    if trained:
        heard = {"accents": set().union(*(accents[n] for n in trained)),
                 "variants": set().union(*(variants[n] for n in trained)),
                 "words": set().union(*(words[n] for n in trained))}
        if "eval" in rows:
            report["variant_overlap_train_eval"] = sorted(heard["variants"] & variants["eval"])
            report["eval_words_seen_in_train"] = len(words["eval"] & heard["words"]) / max(len(words["eval"]), 1)
        if "eval_accents" in rows:
            report["accent_overlap_train_eval_accents"] = sorted(heard["accents"] & accents["eval_accents"])
    return report


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train", "train_count", type=click.IntRange(1), default=SIZES["train"], show_default=True)
@click.option("--eval", "eval_count", type=click.IntRange(1), default=SIZES["eval"], show_default=True,
              help="Utterances by held-out variants.")
@click.option("--accents", type=click.IntRange(1), default=SIZES["eval_accents"], show_default=True,
              help="Utterances by held-out accents.")
@click.option("--calibration", type=click.IntRange(1), default=SIZES["calibration"], show_default=True)
@click.option("--random-voices", "train_random", type=click.IntRange(0), default=SIZES["train_random"],
              show_default=True, help="Training utterances by random voices (split train_random; 0: none).")
@click.option("--random-accents", "train_accents", type=click.IntRange(0), default=SIZES["train_accents"],
              show_default=True, help="Training utterances by random accents (split train_accents; 0: none).")
@click.option("--vowel-shifts", "train_shifts", type=click.IntRange(0), default=SIZES["train_shifts"],
              show_default=True, help="Training utterances by random accents with vowel shifts (split "
              "train_shifts; 0: none).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--only", multiple=True, type=click.Choice(SPLITS),
              help="Render only these splits (repeatable); the others keep what OUT has.")
@click.option("--force", is_flag=True, help="Render splits OUT already has again, replacing them.")
@click.option("--unseen-by", "unseen_by", multiple=True, type=int, metavar="SEED",
              help="Held-out and calibration splits use no sentence of this seed's training splits (repeatable): "
                   "a larger held-out set for a model trained on those seeds.")
@handle_errors
def main(out, seed, train_count, eval_count, accents, calibration, train_random, train_accents, train_shifts,
         workers, only, force, unseen_by):
    """Synthesize the corpus into OUT: train/, eval/, eval_accents/, calibration/, train_random/,
    train_accents/, train_shifts/ FLACs and JSONL manifests."""
    progress = Progress()
    unseen = frozenset().union(*(training_sentences(s) for s in unseen_by))
    manifests = build(out, seed, train_count, eval_count, accents, calibration, workers, progress,
                      only or SPLITS, train_random, train_accents, train_shifts, force, unseen)
    progress(json.dumps(split_report(manifests)))


if __name__ == "__main__":
    main()
