"""Logging set-up for the command line: secrets never reach a log line.

Two layers. Libraries that log request headers at DEBUG (botocore logs every signed request,
``X-Amz-Security-Token`` and ``Authorization`` included; urllib3 logs URLs that may carry a
presigned query) stay at INFO even with ``-v``. And every handler we install redacts, in the
final text of each record (message, arguments and traceback), the values of credential
environment variables and anything that looks like a signed header or query parameter.
"""
from __future__ import annotations

import logging
import os
import re

# environment variables whose values are credentials; their values are redacted wherever they appear
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID",
                   "RAY_AUTH_TOKEN", "PREFECT_API_KEY", "HF_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
# libraries that log credentials or signed requests at DEBUG
NOISY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "aiobotocore", "s3fs")
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values ("x", "test") would redact ordinary words

_PATTERNS = [
    # header or query parameter forms of AWS credentials and signatures
    re.compile(r"(?i)(x-amz-security-token|x-amz-signature|x-amz-credential|aws_secret_access_key|"
               r"aws_session_token|authorization|signature|credential)(['\"]?\s*[:=]\s*b?['\"]?)([^'\"\s,}&]+)"),
    re.compile(r"(?i)(AWS4-HMAC-SHA256\s+Credential=)([^,\s'\"]+)"),
]


def secret_values(environ=None) -> list[str]:
    env = os.environ if environ is None else environ
    return sorted({env[k] for k in SECRET_ENV_VARS if len(env.get(k) or "") >= MIN_SECRET_LENGTH},
                  key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with credential values and signed-request fields replaced by ``[REDACTED]``."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, REDACTED)
    text = _PATTERNS[0].sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _PATTERNS[1].sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """Formats the record as usual, then redacts the whole text (message, args, traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(verbose: bool, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """Root handler on stderr with redaction; our loggers at DEBUG with ``-v``, noisy libraries at INFO."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(fmt))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
