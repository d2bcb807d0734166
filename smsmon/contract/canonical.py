"""Canonical forms of the wire contract: msisdn, port codes, keywords, signatures, partitions."""

from __future__ import annotations

import hmac
import itertools
import json
import re
import struct
import unicodedata
from collections.abc import Callable
from typing import Any

import msgspec

_MSISDN_NOISE = re.compile(r"[\s\-]")
_MSISDN = re.compile(r"1\d{10}")
_DIGITS = re.compile(r"\d+")
_PREFIXES = frozenset({"+86", "0086", "86", "+86 ", "0086 ", "86 ", "+86-", "0086-", "86-"})


class CanonicalError(ValueError):
    """A value that has no canonical form (the message names what was wrong)."""


def canonical_msisdn(raw: object) -> str:
    """Return the 11-digit Chinese national number for `raw`.

    Accepts `+86`, `0086` and `86` prefixes, spaces and dashes; anything else raises
    CanonicalError (a dead letter `schema:msisdn`).
    """
    if not isinstance(raw, str):
        raise CanonicalError(f"msisdn must be a string, got {type(raw).__name__}")
    if type(raw) is str and len(raw) >= 11:
        # The common forms, 1xxxxxxxxxx after nothing or a plain prefix (+86, 0086, 86 and
        # one space or dash): what the full path below returns for them.
        number = raw[-11:]
        if (
            number[0] == "1"
            and number.isascii()
            and number.isdigit()
            and (len(raw) == 11 or raw[:-11] in _PREFIXES)
        ):
            return number
    s = _MSISDN_NOISE.sub("", raw)
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif len(s) == 13 and s.startswith("86"):
        s = s[2:]
    if not _MSISDN.fullmatch(s) or not s.isascii():
        raise CanonicalError("msisdn is not an 11-digit mobile number (1xxxxxxxxxx)")
    return s


def canonical_port(raw: object) -> str:
    """Return the port code as digits only (an SMS port such as 1069xxxx plus extension)."""
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise CanonicalError(f"port must be a string of digits, got {type(raw).__name__}")
    s = str(raw).strip()
    if not s.isascii() or not s.isdigit() or not 3 <= len(s) <= 21:
        raise CanonicalError("port must be 3 to 21 ASCII digits")
    return s


def _is_punct_or_space(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in ("P", "Z", "S") or ch.isspace() or cat == "Cc"


# The last text `folded` normalised and its result: the content rules fold one message's
# text two or three times (opt-out, sector, classifier), and NFKC is most of their cost.
_LAST_FOLDED: tuple[str | None, str] = (None, "")
# `_FOLD`'s value for a character whose NFKC form may depend on its neighbours.
_CONTEXTUAL = "\uffff"


def _fold_char(ch: str) -> int | str:
    """`normalize("NFKC", ch).casefold()` (as a code point when it is one character), or
    _CONTEXTUAL when a character of `ch`'s decomposition is a combining mark (canonical
    class not 0, or a mark by category: every second character of a canonical composition
    pair is one, tests/unit/contract/test_canonical.py checks that over all of Unicode) or a
    Hangul vowel or final jamo (composed with the syllable before it)."""
    for x in unicodedata.normalize("NFKD", ch):
        mark = unicodedata.combining(x) or unicodedata.category(x)[0] == "M"
        if mark or "\u1160" <= x <= "\u11ff":
            return _CONTEXTUAL
    value = unicodedata.normalize("NFKC", ch).casefold()
    return ord(value) if len(value) == 1 else value


class CharTable(dict[int, Any]):
    """A `str.translate` table whose value for a code point is `of(code point)`, filled on
    first sight of each character."""

    def __init__(self, of: Callable[[int], Any]) -> None:
        super().__init__()
        self._of = of

    def __missing__(self, cp: int) -> Any:
        value = self._of(cp)
        if len(self) < 200_000:  # every character a real text uses; bounded against junk
            self[cp] = value
        return value


_FOLD = CharTable(lambda cp: _fold_char(chr(cp)))


def folded(text: str) -> str:
    """`unicodedata.normalize("NFKC", text).casefold()`, remembered for the last text (by
    identity: a str is immutable).

    Character by character where that is the same: with no combining mark or Hangul jamo
    in the text's decomposition, canonical ordering and composition change nothing, so NFKC
    of the text is the NFKC of each character in turn (and case folding is per character);
    a table of those is half the cost of `normalize` on a Chinese SMS. Any other text, and
    one holding U+FFFF itself, is normalised as a whole."""
    global _LAST_FOLDED
    last = _LAST_FOLDED
    if last[0] is text:
        return last[1]
    if text.isascii():
        s = text.casefold()  # NFKC leaves ASCII as it is
    else:
        s = text.translate(_FOLD)
        if _CONTEXTUAL in s:
            s = unicodedata.normalize("NFKC", text).casefold()
    _LAST_FOLDED = (text, s)
    return s


def normalize_keyword(text: str) -> str:
    """NFKC, case-fold, and trim whitespace and punctuation from both ends."""
    s = unicodedata.normalize("NFKC", text).casefold()
    start, end = 0, len(s)
    while start < end and _is_punct_or_space(s[start]):
        start += 1
    while end > start and _is_punct_or_space(s[end - 1]):
        end -= 1
    return s[start:end]


def canonical_signature(raw: str | None) -> str | None:
    """Normalised signature text, or None for an absent or empty signature (`【】`)."""
    if raw is None:
        return None
    s = raw.strip()
    if s.startswith("【") and s.endswith("】"):
        s = s[1:-1]
    s = normalize_keyword(s)
    return s or None


_LEADING_SIG = re.compile(r"^\s*【([^【】]*)】")
_TRAILING_SIG = re.compile(r"【([^【】]*)】\s*$")


def extract_signature(signature_field: str | None, text: str) -> str | None:
    """Signature of an mt event: the field if present, else a leading 【…】, else a trailing one.

    Returns the canonical (normalised) signature or None.
    """
    if signature_field is not None:
        return _signature_cached(signature_field)
    m = _LEADING_SIG.match(text) or _TRAILING_SIG.search(text)
    if m is None:
        return None
    return _signature_cached(m.group(1))


_SIGNATURES: dict[str, str | None] = {}


def _signature_cached(raw: str) -> str | None:
    """canonical_signature(raw), remembered: traffic uses a few thousand signatures."""
    try:
        return _SIGNATURES[raw]
    except KeyError:
        pass
    sig = canonical_signature(raw)
    if len(_SIGNATURES) >= 65_536:
        _SIGNATURES.clear()
    _SIGNATURES[raw] = sig
    return sig


_M = 0x5BD1E995
_UINT32 = struct.Struct("<I").unpack_from
_UINT32X2 = struct.Struct("<II").unpack_from
_H11 = ((0x9747B28C ^ 11) * _M) & 0xFFFFFFFF  # the seed of an 11-byte key, times _M


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Java client `Utils.murmur2`), as `kafka.partitioner.default.murmur2`
    computes it, faster (4-byte blocks read with `struct`, fewer masks; property-tested
    against kafka-python's)."""
    length = len(data)
    h: int  # struct's unpack is untyped
    if length == 11:  # a canonical msisdn: two blocks and a 3-byte tail, unrolled
        a, b = _UINT32X2(data, 0)
        k = (a * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = _H11 ^ k
        k = (b * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k ^ (data[10] << 16) ^ (data[9] << 8)
        h = ((h ^ data[8]) * _M) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * _M) & 0xFFFFFFFF
        return h ^ (h >> 15)
    h = 0x9747B28C ^ length
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = (_UINT32(data, i)[0] * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[n4 + 2] << 16
        if tail >= 2:
            h ^= data[n4 + 1] << 8
        h = ((h ^ data[n4]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(msisdn: str, partitions: int) -> int:
    """smsmon's partition for a canonical msisdn: Kafka's Java default (murmur2) on its bytes.

    Producers that key by canonical msisdn with a Java-compatible partitioner already place
    events here; everything else is forwarded once through the re-keying topic.
    """
    key = (msisdn, partitions)
    p = _PARTITIONS.get(key)
    if p is None:
        p = (murmur2(msisdn.encode()) & 0x7FFFFFFF) % partitions
        _remember(_PARTITIONS, key, p)
    return p


_PARTITIONS: dict[tuple[str, int], int] = {}


def mask_msisdn(msisdn: str) -> str:
    """Masked display form: `138****8000`."""
    return f"{msisdn[:3]}****{msisdn[-4:]}"


# Hashes and partitions remembered per process, for the subscribers seen most recently: a
# subscriber with alerts usually has several (each rule of a message, floods, complaints),
# and the worker computes each msisdn's partition once or twice per record. Bounded: the
# oldest half is dropped when full (the raw msisdns stay in process memory only, as the
# records themselves do; nothing here is logged or exported).
_MEMO_MAX = 1 << 17


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_MAX:
        for old in list(itertools.islice(memo, _MEMO_MAX // 2)):
            del memo[old]
    memo[key] = value


class MsisdnHasher:
    """Keyed HMAC-SHA256 of msisdns, tagged with a key id so the secret can be rotated."""

    __slots__ = ("_key", "_key_id", "_memo")

    def __init__(self, secret: bytes, key_id: str) -> None:
        if not secret:
            raise ValueError("msisdn hashing secret must not be empty")
        self._key = secret
        self._key_id = key_id
        self._memo: dict[str, str] = {}

    def __call__(self, msisdn: str) -> str:
        hashed = self._memo.get(msisdn)
        if hashed is None:
            digest = hmac.digest(self._key, msisdn.encode(), "sha256").hex()
            hashed = f"{self._key_id}:{digest}"
            _remember(self._memo, msisdn, hashed)
        return hashed


# json.dumps with any argument builds a JSONEncoder per call; one shared encoder, and no
# check for circular references (the values encoded are plain trees built by our code).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def compact_json(obj: Any) -> bytes:
    """`json.dumps(obj, separators=(",", ":"), ensure_ascii=False)` as UTF-8: the encoding of
    table values that may hold floats (stage 2's subject states)."""
    return _COMPACT.encode(obj).encode()


#: `compact_json` for trees of str, int, bool, None, lists and str-keyed dicts (the
#: per-subscriber state and the stage-1 partials): msgspec writes the same bytes four times
#: faster (tests/unit/contract/test_canonical.py checks both, and that `read_json` reads
#: what either wrote as `json.loads` does). Floats would differ in spelling only (`1e16`
#: for `1e+16`); NaN is not written as json writes it, so values with floats keep
#: `compact_json`.
state_json = msgspec.json.encode
read_json = msgspec.json.decode
