"""Presentation: the documents people read about releases and runs, rendered from the data.

Above ``corpus``, ``reference``, ``pipelines`` and ``training`` (it reads what they write) and
below ``flows`` and the CLI commands (which write these documents after the work is done).
``document`` is the one renderer (markdown + HTML + PNG figures); ``datasheet`` describes a
release, ``training_report`` a training run, ``run_summary`` a build's summary as text.
"""
