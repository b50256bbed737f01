"""Imported once by the bounded readers' fork server (:mod:`pipelines.bounded`): loads Silero VAD's
ONNX session there, so every reader forked from it uses that session instead of building its own
(0.1-0.4 s per file). faster-whisper's session runs on the calling thread (one intra-op and one
inter-op thread, no thread pool), so there is no pool thread for the fork to leave behind;
``tests/pipelines/test_recording.py`` checks a forked reader's VAD against the whole-array VAD."""
from faster_whisper.vad import get_vad_model

get_vad_model()
