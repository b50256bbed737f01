"""Text normalisation and error rates, shared by calibration, tests and training metrics.

``normalize_text`` lowercases, spells out numbers the way people read them (4-digit numbers
1100-2099 as years: "1984" → "nineteen eighty four"; others as "three hundred and forty two"),
and drops punctuation, so a label that writes digits and a transcript that spells them agree.
"""
from __future__ import annotations

import re

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
    "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
    "eighty", "ninety",
)


def number_to_words(n: int) -> str:
    """Spell a number 0..999999 as plain English words, without hyphens.

    >>> number_to_words(342)
    'three hundred and forty two'
    """
    n = int(n)
    if n < 0 or n > 999_999:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        words = _ONES[hundreds] + " hundred"
        return words if rest == 0 else words + " and " + number_to_words(rest)
    thousands, rest = divmod(n, 1000)
    words = number_to_words(thousands) + " thousand"
    if rest == 0:
        return words
    if rest < 100:
        return words + " and " + number_to_words(rest)
    return words + " " + number_to_words(rest)


def year_words(year: int) -> str:
    """1900..2029 the way years are usually read: 'nineteen eighty four'."""
    if 2000 <= year < 2010:
        return "two thousand" + ("" if year == 2000 else " and " + _ONES[year - 2000])
    hi, lo = divmod(year, 100)
    if lo == 0:
        return number_to_words(hi) + " hundred"
    if lo < 10:
        return number_to_words(hi) + " oh " + _ONES[lo]
    return number_to_words(hi) + " " + number_to_words(lo)



_NUMBER = re.compile(r"\d+(?:,\d{3})*")
_NON_WORD = re.compile(r"[^\w' ]+")
_SPACES = re.compile(r"\s+")


def _spell(match: re.Match) -> str:
    digits = match.group(0).replace(",", "")
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 2099 and "," not in match.group(0):
        return f" {year_words(n)} "
    return f" {number_to_words(n)} " if n <= 999_999 else f" {digits} "


_CURRENCY = re.compile(r"([$£€])\s?(\d+(?:,\d{3})*(?:\.\d+)?)")
_CURRENCY_WORDS = {"$": "dollars", "£": "pounds", "€": "euros"}


_TAGS = re.compile(r"\[[^\]]*\]|<[^>]*>")  # [L], [noise], <unk>: annotations, not words


def normalize_text(text: str) -> str:
    text = _TAGS.sub(" ", text)
    text = _CURRENCY.sub(lambda m: f"{m.group(2)} {_CURRENCY_WORDS[m.group(1)]}", text)
    text = _NUMBER.sub(_spell, text.lower().replace("-", " "))
    text = _NON_WORD.sub(" ", text).replace(" '", " ").replace("' ", " ")
    return _SPACES.sub(" ", text).strip()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of normalised texts (an empty reference: 0 if the hypothesis is empty too, else 1)."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or ""))


def char_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.cer(ref, hyp or ""))
