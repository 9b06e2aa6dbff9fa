"""TextVectorization's string steps, as TensorFlow's ops do them (on Python ``str``).

* ``lower``: ``tf.strings.lower`` with its default empty encoding lowercases ASCII letters only ("ÉTÉ" →
  "ÉtÉ"), so ``str.lower`` (Unicode) would differ.
* ``strip_punctuation``: Keras's regex ``[!"#$%&()\\*\\+,-\\./:;<=>?@\\[\\\\\\]^_`{|}~\\']`` (ASCII punctuation
  only; ``,-\\.`` is the range ``,`` ``-`` ``.``).
* ``split_whitespace``: ``tf.strings.split`` without a separator splits on ASCII whitespace (space, ``\\t``,
  ``\\n``, ``\\v``, ``\\f``, ``\\r``) and drops empty pieces; a no-break space is not a separator.
* ``split_characters``: ``tf.strings.unicode_split(..., "UTF-8")``: one piece per code point.
* ``ngrams``: ``tf.strings.ngrams(tokens, widths, separator=" ")``: for each width in order, every run of
  that many consecutive tokens joined by a space (none when the row is shorter).
"""

from __future__ import annotations

import re

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def strip_punctuation(text: str) -> str:
    return PUNCTUATION.sub("", text)


def split_whitespace(text: str) -> list[str]:
    return [piece for piece in _ASCII_SPACE.split(text) if piece]


def split_characters(text: str) -> list[str]:
    return list(text)


def ngrams(tokens: list, widths: tuple) -> list[str]:
    out = []
    for width in widths:
        out.extend(" ".join(tokens[i:i + width]) for i in range(len(tokens) - width + 1))
    return out
