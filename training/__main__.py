"""``python -m training train ...`` (and ``torchrun ... -m training train ...``): the ``stt-corpus train`` command."""
import sys

from training.cli import main

sys.exit(main())
