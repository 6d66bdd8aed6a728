"""One command: corpus and test model from a seed.

    python -m testmodel.train OUT_DIR [--seed 0] [--minutes 85] [--init CHECKPOINT] [--average N]
        [--encoder-minutes M] [--easy-minutes M] [--eval-every N] [--warp S] [--spec-augment S]
        [--corpus CORPUS_DIR] [--workers N] [--force] [--install]

Synthesizes the espeak-ng corpus into OUT_DIR/corpus (testmodel.train.corpus; or reads an existing one given
by --corpus), trains the test model into OUT_DIR/model (testmodel.train.train), from scratch or warm-started
from --init; with --install, copies the model and the two held-out splits and the calibration split into
the package's assets (qasr.assets), replacing the shipped ones. What OUT_DIR already holds is replaced
only with --force.

Its defaults are the measured CPU recipe from scratch (RECIPE; testmodel/README.md): 15 minutes of the audio
tower alone and 10 of the whole model on the easy utterances, then the whole corpus with augmentation, the
mean of the last 5 evaluations. With --init there is no stage 1 and, unless asked, no easy phase.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from qasr.runtime.cli_support import Progress, handle_errors

from .corpus import build, split_report
from .train import TrainSettings, shared_option, train

# the CPU recipe from scratch as measured (testmodel/RESULTS.md, "The CPU recipe from scratch, fourth run")
RECIPE = {"minutes": 85.0, "encoder_minutes": 15.0, "easy_minutes": 25.0, "eval_every": 500, "warp": 0.5,
          "spec_augment": 0.5, "average": 5}


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@shared_option("seed")
@shared_option("steps")
@shared_option("minutes", default=RECIPE["minutes"])
@shared_option("init")
@shared_option("encoder_minutes", default=RECIPE["encoder_minutes"])
@shared_option("easy_minutes", default=None, show_default=f"{RECIPE['easy_minutes']:g}; 0 with --init")  # resolved in main
@shared_option("eval_every", default=RECIPE["eval_every"])
@shared_option("lr")
@shared_option("ctc_weight")
@shared_option("warp", default=RECIPE["warp"])
@shared_option("spec_augment", default=RECIPE["spec_augment"])
@shared_option("average", default=RECIPE["average"])
@click.option("--corpus", "corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Train on this existing corpus (made by testmodel.train.corpus) instead of synthesizing one.")
@shared_option("bf16")
@click.option("--force", is_flag=True, help="Replace the corpus and model OUT already holds.")
@click.option("--install", is_flag=True, help="Copy the model and the shipped splits into qasr.assets.")
@shared_option("workers")
@handle_errors
def main(out, seed, steps, minutes, init, encoder_minutes, easy_minutes, eval_every, lr, ctc_weight, warp, spec_augment,
         average, corpus, bf16, force, install, workers):
    """Regenerate the corpus and the small trained Qwen3-ASR test model into OUT."""
    progress = Progress()
    if corpus is None:
        corpus = out / "corpus"
        manifests = build(corpus, seed=seed, workers=workers, progress=progress, force=force)
        progress(f"splits: {split_report(manifests)}")
    if easy_minutes is None:  # a warm start continues a model that already reads the audio
        easy_minutes = 0.0 if init else RECIPE["easy_minutes"]
    model = train(TrainSettings(corpus=corpus, out=out / "model", seed=seed, steps=steps, minutes=minutes,
                                init=init, encoder_minutes=encoder_minutes, easy_minutes=easy_minutes,
                                eval_every=eval_every, lr=lr, ctc_weight=ctc_weight, warp=warp,
                                spec_augment=spec_augment, average=average, bf16=bf16, workers=workers),
                  progress, force)
    if install:
        install_model(model, corpus, progress)


def install_model(model: Path, corpus: Path, progress=print) -> None:
    """Replace the shipped test model and its shipped splits (qasr.assets) with `model` and `corpus`'s."""
    from qasr.assets import SPEECH, TEST_MODEL

    shutil.rmtree(TEST_MODEL, ignore_errors=True)
    shutil.copytree(model, TEST_MODEL)
    for split in ("eval", "eval_accents", "calibration"):
        shutil.rmtree(SPEECH / split, ignore_errors=True)
        shutil.copytree(corpus / split, SPEECH / split)
        shutil.copy(corpus / f"{split}.jsonl", SPEECH / f"{split}.jsonl")
    progress(f"installed the model into {TEST_MODEL} and the splits into {SPEECH}")


if __name__ == "__main__":
    main()
