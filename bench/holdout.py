"""An unseen hold-out for label quality: what calibration and the shipped defaults never saw.

Unlike ``gen-audio`` (``reference/gen_audio.py``), whose audio tuned the filters: other espeak-ng
voices and variants (New York, Lancaster, West Midlands accents; klatt, m1/m5/m6/m8, f1/f4),
other texts (Harvard sentences, IEEE 1969, not gen-audio's templates), other degradations:

``reverb``     room reverberation (sox ``reverb``), 16 kHz
``telephone``  300-3400 Hz, companded, 8 kHz mu-law (sox ``compand`` + ``-e u-law``)
``brown``      brown noise at 3-8 dB SNR, 16 kHz

One English file in two of each domain has a French, German or Spanish sentence inside it
(truth rows carry ``language``); ``nospeech-*.wav`` files hold no speech at all (brown noise,
a music bed, room hum). Truth rows: ``file, start, end, text, domain, voice, language, words``;
``words`` are ``[start, end, word]`` (seconds in the file, normalised words) from espeak-ng's own
word events (``bench/espeak_words.py``), exact to the sample, not estimated.
Deterministic for a given seed. Nothing may be fitted on this set: it only measures.
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.espeak_words import EspeakWords  # noqa: E402
from reference.gen_audio import (CLEAN_SR, _assemble, _coloured_noise, _music_bed, _normalise_peak,  # noqa: E402
                              _Planned, _sox, _speak, _speech_rms, _trim_speech)

VOICES = ("en-us-nyc+m1", "en-gb-x-gbclan+f1", "en-gb-x-gbcwmd+m5", "en-us+klatt2", "en-gb+m6", "en-029+f4",
          "en-us+m8")
HARVARD = (
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.", "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.", "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.", "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.", "What joy there is in living.",
    "A king ruled the state in the early days.", "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.", "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.", "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.", "Hop over the fence and plunge in.",
)
FOREIGN = {
    "fr": ("Le petit chat dort tranquillement sur le canapé du salon.",
           "Nous avons mangé une excellente soupe aux légumes hier soir."),
    "de": ("Der alte Mann geht jeden Morgen mit seinem Hund spazieren.",
           "Im Sommer fahren wir oft mit dem Fahrrad an den See."),
    "es": ("Mi hermana trabaja en un hospital grande del centro de la ciudad.",
           "Los niños juegan en el parque cuando termina la escuela."),
}
DOMAINS = ("reverb", "telephone", "brown")


def _render(domain: str, clean: Path, out: Path, spans, rng: random.Random, tmp: Path) -> None:
    if domain == "reverb":
        _sox([str(clean), "-b", "16", "-c", "1", "-r", "16000", str(out), "reverb", str(rng.randint(40, 70)),
              "50", str(rng.randint(60, 100)), "rate", "-v", "16000", "gain", "-n", "-1"], what=out.name)
    elif domain == "telephone":
        _sox([str(clean), "-e", "u-law", "-b", "8", "-c", "1", "-r", "8000", str(out), "highpass", "300",
              "lowpass", "3400", "compand", "0.02,0.15", "6:-60,-50,-30,-20,0,-6", "-3", "-80", "0.1",
              "rate", "-v", "8000", "gain", "-n", "-1"], what=out.name)
    else:
        speech_path = tmp / "speech16k.wav"
        _sox([str(clean), "-e", "floating-point", "-b", "32", str(speech_path), "rate", "-v", "16000"], what=out.name)
        speech, _ = sf.read(str(speech_path), dtype="float32")
        noise = _coloured_noise(np.random.default_rng(rng.getrandbits(64)), len(speech), 16000, "brown")
        snr_db = rng.uniform(3.0, 8.0)
        gain = _speech_rms(speech, spans, 16000) / (10 ** (snr_db / 20)) / float(np.std(noise))
        sf.write(str(out), _normalise_peak(speech + noise * np.float32(gain)), 16000, subtype="PCM_16")


def generate(out_dir: Path, *, files_per_domain: int = 3, sentences: int = 8, seed: int = 1201,
             first: int = 0) -> list[dict]:
    """Files ``first`` .. ``files_per_domain - 1`` of each domain (each file depends only on the seed,
    its domain and its index, so a later index is new audio the earlier ones never showed) and
    the no-speech files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    timer = EspeakWords()
    with tempfile.TemporaryDirectory(prefix="holdout-") as tmpd:
        tmp = Path(tmpd)
        for domain in DOMAINS:
            for idx in range(first, files_per_domain):
                rng = random.Random(f"stt-corpus.holdout:{seed}:{domain}:{idx}")
                voices = rng.sample(VOICES, 2)
                texts = rng.sample(HARVARD, sentences)
                plans = [(t, rng.choice(voices), "en") for t in texts]
                if idx % 2 == 0:  # a foreign sentence inside an English recording
                    lang = rng.choice(sorted(FOREIGN))
                    plans.insert(rng.randint(2, sentences - 2), (rng.choice(FOREIGN[lang]), lang, lang))
                spoken = [_speak(_Planned(text=t, voice=v, speed=rng.randint(135, 175),
                                          pause=round(rng.uniform(0.35, 1.2), 3), gain_db=rng.uniform(-3, 0)))
                          for t, v, _ in plans]
                timed = []
                for s in spoken:
                    raw, words = timer.words(s.plan.text, s.plan.voice, s.plan.speed)
                    # the breathy variants' noise tails can end a frame or three apart (5-15 ms)
                    if abs(len(_trim_speech(raw)) - len(s.audio)) > 0.05 * CLEAN_SR:
                        # not the audio the CLI spoke: no word times for this sentence (its words are
                        # then timed by spreading the sentence over its characters, bench/quality.py)
                        print(f"warning: libespeak-ng's audio is not the CLI's for {s.plan.text!r} "
                              f"({s.plan.voice}); its words are not timed", file=sys.stderr)
                        timed.append(None)
                        continue
                    end = len(s.audio) / CLEAN_SR
                    timed.append([(min(a, end), min(b, end), w) for a, b, w in words])
                clean, spans = _assemble(spoken)
                clean_path = tmp / "clean.wav"
                sf.write(str(clean_path), clean, CLEAN_SR, subtype="FLOAT")
                name = f"{domain}-{idx:03d}.wav"
                _render(domain, clean_path, out_dir / name, spans, rng, tmp)
                rows += [{"file": name, "start": round(a / CLEAN_SR, 3), "end": round(b / CLEAN_SR, 3), "text": t,
                          "domain": domain, "voice": v, "language": lang,
                          "words": None if tw is None else
                          [[round(a / CLEAN_SR + ws, 3), round(a / CLEAN_SR + we, 3), w] for ws, we, w in tw]}
                         for (t, v, lang), (a, b), tw in zip(plans, spans, timed)]
        nrng = np.random.default_rng(seed)
        n = 20 * 16000
        t = np.arange(n) / 16000
        silent = {"nospeech-000.wav": _coloured_noise(nrng, n, 16000, "brown") * 0.05,
                  "nospeech-001.wav": _music_bed(nrng, n, 16000).mean(axis=1) * 0.1,
                  "nospeech-002.wav": (0.02 * np.sin(2 * np.pi * 50 * t) + 0.003 * nrng.standard_normal(n))}
        for name, x in silent.items():
            sf.write(str(out_dir / name), _normalise_peak(np.asarray(x, dtype=np.float32), -12.0), 16000,
                     subtype="PCM_16")
    rows.sort(key=lambda r: (r["file"], r["start"]))
    (out_dir / "truth.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--files-per-domain", type=int, default=3)
    parser.add_argument("--first", type=int, default=0, help="first file index per domain (0: all)")
    parser.add_argument("--seed", type=int, default=1201)
    args = parser.parse_args()
    rows = generate(Path(args.out_dir), files_per_domain=args.files_per_domain, first=args.first, seed=args.seed)
    print(f"{len(rows)} sentences, {sum(r['language'] != 'en' for r in rows)} foreign")
