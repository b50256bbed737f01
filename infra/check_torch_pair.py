"""Set-up check: torch and torchaudio must load together, extension included.

torchaudio's compiled extension loads only with the torch it was built for (torchaudio 2.11.1
does not load with torch 2.11.0). Found at set-up, this is one clear message; found mid-demo, it
is an `undefined symbol` traceback. Exit status 0 when the pair works, 1 with a message otherwise.
"""
from __future__ import annotations

import sys

FIX = ("Install from the lock (`make setup`, which runs `uv sync --frozen`), or install the exact "
       "pair the lock names; torch and torchaudio must have the same version.")


def release(version: str) -> str:
    """'2.11.0+cu130' -> '2.11.0': the part that has to match between the two packages."""
    return version.split("+", 1)[0]


def check() -> str:
    """Import both, load torchaudio's extension and run one of its ops; raise RuntimeError on failure."""
    try:
        import torch
    except Exception as error:  # noqa: BLE001 - any import failure is the message
        raise RuntimeError(f"torch does not import: {error}. {FIX}") from error
    try:
        import torchaudio
    except Exception as error:  # noqa: BLE001
        raise RuntimeError(f"torchaudio does not load with torch {torch.__version__}: {error}. {FIX}") from error
    if release(torch.__version__) != release(torchaudio.__version__):
        raise RuntimeError(f"torch {torch.__version__} and torchaudio {torchaudio.__version__} are not a pair: "
                           f"torchaudio's extension loads only with the torch it was built for. {FIX}")
    try:
        from torchaudio import _extension
        if not _extension._IS_TORCHAUDIO_EXT_AVAILABLE:
            raise OSError("torchaudio was installed without its compiled extension")
        import torchaudio.transforms as transforms
        transforms.MelSpectrogram(sample_rate=16000, n_mels=40)(torch.zeros(1, 1600))
    except Exception as error:  # noqa: BLE001
        raise RuntimeError(f"torchaudio {torchaudio.__version__}'s extension does not load with torch "
                           f"{torch.__version__}: {error}. {FIX}") from error
    return f"torch {torch.__version__} and torchaudio {torchaudio.__version__} load together"


def main() -> int:
    try:
        print(check())
    except RuntimeError as error:
        print(f"set-up check failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
