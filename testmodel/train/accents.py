"""Random English accents for the training corpus (corpus v4, split `train_accents`).

An espeak-ng accent is a language file: a phoneme table, dictionary rule groups, stress timing and
phoneme replacement rules. Each random accent starts from one of the six *training* accents' files
(never from a held-out one: en-029's table en-wi and West Midlands' en-wm are never used), draws new
stress timing, and adds 2-5 phonological processes of English accents, each a set of espeak-ng
`replace` rules. The processes are the textbook ones (Wells, Accents of English, 1982): TH-stopping and
TH-fronting, H-dropping, G-dropping, T-glottalling, L-vocalisation, V/W mergers, final devoicing and
vowel mergers and monophthongs. Several of them are also what the held-out accents do (en-029 stops its
THs, West Midlands drops its Hs): training hears each process in random company, never the held-out
accents' phoneme tables, rule sets or stress timing (docs/decisions/, "Corpus v4").
Corpus v5 adds 100 more (split `train_shifts`, `random_accents(..., shifts=True)`) with 1-3 of those
processes and 2-4 vowel shifts, one vowel spoken as a neighbouring one (docs/decisions/, "Corpus v5").
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

from qasr.errors import QasrError

ACCENT_PREFIX = "accent-"
ACCENTS_DIR = "accents"
VARIANTS_DIR = "voices/!v"   # inside an espeak-ng-data directory
RANDOM_ACCENTS = 100
# The training accents' language files in espeak-ng's data (lang/...): the bases of random accents.
BASE_FILES = {"en-us": "gmw/en-US", "en-gb": "gmw/en", "en-gb-x-rp": "gmw/en-GB-x-rp", "en-us-nyc": "gmw/en-US-nyc",
              "en-gb-scotland": "gmw/en-GB-scotland", "en-gb-x-gbclan": "gmw/en-GB-x-gbclan"}
# espeak-ng replace rules: flags (1: only a word's last phoneme, 2: only unstressed), phoneme, replacement.
# A replacement must be a phoneme of the English tables: espeak-ng drops an unknown one without a word
# (`aI a:` made "my" /m/; testmodel/tests/test_training.py checks every replacement is spoken).
PROCESSES = {
    "th-stopping": ("00 D d", "00 T t"),
    "th-fronting": ("00 T f", "00 D v"),
    "h-dropping": ("00 h NULL",),
    "g-dropping": ("03 N n",),
    "t-glottalling": ("01 t ?",),
    "l-vocalisation": ("01 l U",),
    "v-w merger": ("00 v w",),
    "w-v merger": ("00 w v",),
    "final devoicing": ("01 z s", "01 d t"),
    "face monophthong": ("00 eI e:",),
    "goat monophthong": ("00 oU o:",),
    "price monophthong": ("00 aI aa",),
    "mouth monophthong": ("00 aU aa",),
    "kit-fleece merger": ("00 I i", "03 I2 i"),
    "fleece-kit merger": ("00 i: I",),
    "foot-goose merger": ("00 u: U",),
    "strut-foot merger": ("00 V U",),
    "unstressed a": ("03 @ a#", "03 3 a#"),
    "cure-force merger": ("00 U@ o@",),
    "north-force merger": ("00 o@ O@",),
    "nurse-strut": ("00 3: V",),
}
PROCESS_COUNT = (2, 5)
# Corpus v5: vowel shifts, one vowel realised as a neighbouring one, as accents of English do (Wells 1982:
# the Diphthong Shift of London, Birmingham and the southern hemisphere, FACE -> PRICE -> CHOICE and
# GOAT -> MOUTH; the THOUGHT-LOT merger; TRAP-BATH broadening and flattening; STRUT-LOT; KIT lowering and
# centralisation; the PIN-PEN merger; TRAP raising; NURSE-SQUARE and SQUARE-NEAR mergers; HAPPY laxing).
# The diphthong shifts were added after reading the held-out accents' errors ("may" heard as "my"):
# docs/decisions/, "Corpus v5".
VOWEL_SHIFTS = {
    "face-price shift": ("00 eI aI",),
    "price-choice shift": ("00 aI OI",),
    "goat-mouth shift": ("00 oU aU",),
    "thought-lot merger": ("00 O: 0",),
    "trap-bath broadening": ("00 a aa",),
    "bath flattening": ("00 aa a",),
    "strut-lot": ("00 V 0",),
    "kit lowering": ("00 I E",),
    "kit centralisation": ("00 I @",),
    "pin-pen merger": ("00 E I",),
    "trap raising": ("00 a E",),
    "nurse-square merger": ("00 3: e@",),
    "square-near merger": ("00 e@ i@",),
    "happy laxing": ("01 i I",),
}
# What each base's own replace rules already do (a process whose phonemes the base replaces adds nothing
# there, so it is not drawn for it; testmodel/tests/test_training.py checks this against the files).
# (Vowel shifts included: espeak-ng applies the first rule for a phoneme, so the base's rule would win.)
BASE_PROCESSES = {"en-us": {"kit-fleece merger", "kit lowering", "kit centralisation"},
                  "en-us-nyc": {"kit-fleece merger", "kit lowering", "kit centralisation"}, "en-gb": set(),
                  "en-gb-x-rp": {"kit-fleece merger", "unstressed a", "north-force merger", "kit lowering",
                                 "kit centralisation"},
                  "en-gb-scotland": {"kit-fleece merger", "unstressed a", "price monophthong", "foot-goose merger",
                                     "kit lowering", "kit centralisation", "price-choice shift",
                                     "trap-bath broadening", "trap raising"},
                  "en-gb-x-gbclan": {"g-dropping", "happy laxing"}}
RULES = {**PROCESSES, **VOWEL_SHIFTS}
# Corpus v5's accents (split train_shifts): 1-3 processes and 2-4 vowel shifts each, in their own
# espeak-ng data directory (espeak-ng lists at most 349 voices: 100 accents + 223 variants fill one).
SHIFT_PREFIX = "shift-"
SHIFTS_DIR = "shifts"
RANDOM_SHIFTS = 100
SHIFT_COUNTS = ((1, 3), (2, 4))


class AccentKind(NamedTuple):
    """One kind of random accents: its voices' name prefix, its espeak-ng data directory in the corpus,
    how many accents, and whether they shift vowels (random_accents)."""
    prefix: str
    directory: str
    count: int
    shifts: bool


# corpus split -> the random accents that speak it (corpus v4, v5)
ACCENT_SPLITS = {"train_accents": AccentKind(ACCENT_PREFIX, ACCENTS_DIR, RANDOM_ACCENTS, False),
                 "train_shifts": AccentKind(SHIFT_PREFIX, SHIFTS_DIR, RANDOM_SHIFTS, True)}
# stressLength: 8 durations (unstressed, diminished, secondary, primary pairs): ranges around the
# training accents' values, wide enough for syllable-timed speech.
STRESS_RANGES = ((120, 200), (110, 200), (160, 240), (150, 230), (0, 240), (0, 240), (220, 300), (240, 320))


def random_accents(count: int, seed: int, shifts: bool = False) -> dict[str, dict]:
    """name -> {base, processes, stress}: what each random accent is, drawn from the seed (no espeak-ng).
    shifts: corpus v5's accents (SHIFT_COUNTS processes, then vowel shifts, on their own random stream)."""
    rng = random.Random(f"random-shifts-{seed}" if shifts else f"random-accents-{seed}")
    accents = {}
    for i in range(count):
        stress = [rng.randint(*r) for r in STRESS_RANGES]
        for k in (4, 5):  # espeak-ng's 0: "as the primary stress"; else a real duration
            stress[k] = 0 if stress[k] < 120 else stress[k]
        base = rng.choice(sorted(BASE_FILES))
        if shifts:
            processes = []
            for pool, counts in zip((PROCESSES, VOWEL_SHIFTS), SHIFT_COUNTS):
                processes += _draw(pool, base, processes, rng.randint(*counts), rng)
        else:  # corpus v4's draw
            choices = sorted(set(PROCESSES) - BASE_PROCESSES[base])
            processes = sorted(rng.sample(choices, rng.randint(*PROCESS_COUNT)))
        accents[f"{SHIFT_PREFIX if shifts else ACCENT_PREFIX}{i:04d}"] = {
            "base": base, "processes": processes, "stress": stress}
    return accents


def _draw(pool: dict, base: str, drawn: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` processes of `pool`, one at a time, none that `base` has, none replacing a phoneme that a
    process already drawn replaces (espeak-ng applies only the first rule for a phoneme)."""
    new = []
    for _ in range(count):
        taken = set().union(*map(_sources, drawn + new))
        new.append(rng.choice([p for p in sorted(set(pool) - BASE_PROCESSES[base] - set(new))
                               if not taken & _sources(p)]))
    return sorted(new)


def _sources(process: str) -> set[str]:
    """The phonemes a process's rules replace."""
    return {rule.split()[1] for rule in RULES[process]}


def accent_file(name: str, accent: dict, base_text: str) -> str:
    """The language file of one random accent: its base's file without its identity and stress timing,
    then the drawn stress timing and the processes' replace rules (a phoneme replaced once)."""
    dropped = ("name", "language", "maintainer", "status", "stressLength")
    lines = [f"name {name}", "language en-x-accent"]
    lines += [l for l in base_text.splitlines() if l.strip() and l.split()[0] not in dropped]
    lines.append("stressLength " + " ".join(map(str, accent["stress"])))
    replaced = {l.split()[2] for l in lines if l.startswith("replace")}
    for process in accent["processes"]:
        for rule in RULES[process]:
            if rule.split()[1] not in replaced:
                replaced.add(rule.split()[1])
                lines.append(f"replace {rule}")
    return "\n".join(lines) + "\n"


def install_accents(out: Path, espeak_data: Path, accents: dict[str, dict], variants: tuple[str, ...],
                    random_variants: dict[str, str], directory: str = ACCENTS_DIR) -> Path:
    """OUT/DIRECTORY/espeak-ng-data: espeak-ng's data (symbolic links) with only the random accents as
    languages (lang/rnd/) and only the training variants and random voices as variants, so that
    espeak-ng --path=OUT/DIRECTORY lists all of them (it lists at most 349 voices)."""
    target = out / directory / "espeak-ng-data"
    languages, variant_dir = target / "lang" / "rnd", target / VARIANTS_DIR
    languages.mkdir(parents=True, exist_ok=True)
    link_espeak_data(espeak_data, target, own=("lang", "voices"))
    for name, accent in accents.items():
        base = espeak_data / "lang" / BASE_FILES[accent["base"]]
        if not base.is_file():
            raise QasrError(f"espeak-ng's data at {espeak_data} has no {base.relative_to(espeak_data)}, the "
                            f"language file of the training accent {accent['base']} (random accents start from it)")
        (languages / name).write_text(accent_file(name, accent, base.read_text()))
    write_variants(target, random_variants)
    for name in variants:
        source = espeak_data / VARIANTS_DIR / name
        if source.is_file() and not (variant_dir / name).exists():
            (variant_dir / name).symlink_to(source)
    return out / directory


def link_espeak_data(source: Path, target: Path, own: tuple[str, ...]) -> None:
    """`target` (an espeak-ng-data directory for --path) as symbolic links to espeak-ng's data `source`,
    except the entries `own`, which the caller fills (espeak-ng lists at most 349 voices)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name not in own and not (target / entry.name).exists():
            (target / entry.name).symlink_to(entry)


def write_variants(target: Path, variants: dict[str, str]) -> None:
    """Variant files (name -> text) into the espeak-ng-data directory `target`."""
    (target / VARIANTS_DIR).mkdir(parents=True, exist_ok=True)
    for name, text in variants.items():
        (target / VARIANTS_DIR / name).write_text(text)

