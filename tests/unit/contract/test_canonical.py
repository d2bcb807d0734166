"""Canonical forms of the wire contract: msisdn, port codes, keywords, signatures, masking."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmon.contract.canonical import (
    CanonicalError,
    MsisdnHasher,
    canonical_msisdn,
    canonical_port,
    canonical_signature,
    extract_signature,
    folded,
    mask_msisdn,
    normalize_keyword,
    partition_for,
)

pytestmark = pytest.mark.unit

msisdns = st.from_regex(r"1[0-9]{10}", fullmatch=True)


# --- msisdn -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "+8613800138000",
        "008613800138000",
        "8613800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138-0013-8000",
        "0086 138 0013 8000",
        "86-138-0013-8000",
        " 13800138000 ",
    ],
)
def test_msisdn_prefixes_spaces_and_dashes_are_stripped_to_11_digits(raw: str) -> None:
    """+86, 0086 and 86 prefixes, spaces and dashes all give the same national number."""
    assert canonical_msisdn(raw) == "13800138000"


@pytest.mark.parametrize(
    "raw",
    [
        "1380013800",  # 10 digits
        "138001380001",  # 12 digits
        "+86138001380001",  # 12 digits after the prefix
        "1380013800a",  # a letter
        "abcdefghijk",
        "",
        "+86",
        "138.0013.8000",  # dots are not among the accepted separators
        "１３８００１３８０００",  # full-width digits are not ASCII digits
        "+8513800138000",  # another country code
    ],
)
def test_msisdn_that_is_not_11_national_digits_is_rejected(raw: str) -> None:
    """Anything that is not an 11-digit national number after stripping is rejected."""
    with pytest.raises(CanonicalError):
        canonical_msisdn(raw)


@pytest.mark.parametrize("raw", [13800138000, None, 1.38e10, b"13800138000", ["13800138000"]])
def test_msisdn_non_string_is_rejected(raw: object) -> None:
    """A msisdn must be text; numbers, bytes, lists and null are rejected."""
    with pytest.raises(CanonicalError):
        canonical_msisdn(raw)


def test_canonical_error_is_a_value_error() -> None:
    """CanonicalError is a ValueError, so validators turn it into a schema error."""
    assert issubclass(CanonicalError, ValueError)


@given(msisdns, st.sampled_from(["", "+86", "0086", "86", "+86 ", "0086-"]))
def test_msisdn_canonical_form_is_idempotent_over_prefixes(national: str, prefix: str) -> None:
    """Any accepted prefix in front of a national number canonicalises to that number."""
    assert canonical_msisdn(prefix + national) == national
    assert canonical_msisdn(canonical_msisdn(prefix + national)) == national


# --- port codes -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1069", "106900011234", "10690001"])
def test_port_of_digits_is_kept_as_is(raw: str) -> None:
    """A port code of ASCII digits is its own canonical form (extensions included)."""
    assert canonical_port(raw) == raw


@pytest.mark.parametrize(
    "raw", ["1069a", "1069-0001", "+1069", "", "１０６９", "10 69", None, True, 1.5, ["1069"]]
)
def test_port_that_is_not_digits_only_is_rejected(raw: object) -> None:
    """Port codes are digits only: letters, signs, inner spaces, non-ASCII digits fail."""
    with pytest.raises(CanonicalError):
        canonical_port(raw)


# --- keywords ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("TD", "td"),
        ("Ｔ", "t"),  # full-width letter, NFKC
        ("ＴＤ", "td"),
        ("  td  ", "td"),
        ("\ttd\n", "td"),
        ("　退订　", "退订"),  # ideographic spaces
        ("退订。", "退订"),
        ("【退订】", "退订"),
        ("!!STOP!!", "stop"),
        ("“Unsubscribe”", "unsubscribe"),
        ("Straße", "strasse"),  # case folding, not just lower()
        ("t.d", "t.d"),  # inner punctuation stays
        ("t d", "t d"),  # inner whitespace stays
        ("", ""),
        ("   ", ""),
        ("。！？", ""),
    ],
)
def test_normalize_keyword_nfkc_casefold_and_trim(raw: str, expected: str) -> None:
    """Keywords compare after NFKC, case folding and trimming spaces/punctuation at the ends."""
    assert normalize_keyword(raw) == expected


@given(st.text())
def test_normalize_keyword_is_idempotent(text: str) -> None:
    """Normalising twice gives the same result as once."""
    once = normalize_keyword(text)
    assert normalize_keyword(once) == once


# --- signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["【 Taobao 】", "【TAOBAO】", "Taobao", " taobao ", "【ｔａｏｂａｏ】"]
)
def test_signature_forms_normalise_to_the_same_key(raw: str) -> None:
    """【 Taobao 】, 【TAOBAO】 and full-width forms all match signature 'taobao'."""
    assert canonical_signature(raw) == "taobao"


@pytest.mark.parametrize("raw", [None, "", "【】", "【 】", "  ", "【。】"])
def test_empty_signature_is_no_signature(raw: str | None) -> None:
    """An absent or empty 【】 signature is no signature (None)."""
    assert canonical_signature(raw) is None


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("Alipay", "【Taobao】hello", "alipay"),  # the field wins over the text
        (None, "【Taobao】hello", "taobao"),  # leading
        (None, "  【Taobao】hello", "taobao"),  # leading after whitespace
        (None, "hello【Taobao】", "taobao"),  # trailing
        (None, "hello【Taobao】  ", "taobao"),  # trailing before whitespace
        (None, "【Taobao】hello【JD】", "taobao"),  # leading before trailing
        (None, "hello 【Taobao】 world", None),  # in the middle: neither leading nor trailing
        (None, "hello", None),
        (None, "【】hello", None),  # empty 【】 is no signature
        (None, "hello【】", None),
        (None, "【 TAOBAO 】hello", "taobao"),
        (None, "[Taobao]hello", None),  # ASCII brackets are not 【】
    ],
)
def test_extract_signature_field_then_leading_then_trailing(
    field: str | None, text: str, expected: str | None
) -> None:
    """Signature of an mt: the field if present, else a leading 【…】, else a trailing one."""
    assert extract_signature(field, text) == expected


# --- masking, hashing, partitioning -----------------------------------------------------


def test_mask_msisdn_keeps_first_three_and_last_four() -> None:
    """The masked form is like 138****8000."""
    assert mask_msisdn("13800138000") == "138****8000"


@given(msisdns)
def test_masked_msisdn_never_reveals_the_middle_digits(msisdn: str) -> None:
    """Masking hides digits 4-7 and never equals or contains the number."""
    masked = mask_msisdn(msisdn)
    assert re.fullmatch(r"1\d{2}\*{4}\d{4}", masked)
    assert msisdn not in masked


def test_msisdn_hash_is_key_id_and_hmac_sha256_hex() -> None:
    """msisdn_hash is `<key id>:<hex HMAC-SHA256>` of the canonical msisdn with the secret."""
    h = MsisdnHasher(b"s3cret", "k7")("13800138000")
    expected = hmac.new(b"s3cret", b"13800138000", hashlib.sha256).hexdigest()
    assert h == f"k7:{expected}"
    assert re.fullmatch(r"k7:[0-9a-f]{64}", h)


def test_msisdn_hash_changes_with_the_secret_and_key_id() -> None:
    """Rotating the secret (and its key id) changes the hash; same secret is stable."""
    a = MsisdnHasher(b"secret-1", "k1")("13800138000")
    b = MsisdnHasher(b"secret-2", "k2")("13800138000")
    assert a != b
    assert a.split(":")[1] != b.split(":")[1]
    assert MsisdnHasher(b"secret-1", "k1")("13800138000") == a


def test_msisdn_hasher_refuses_an_empty_secret() -> None:
    """An empty secret would make hashes guessable; it is refused."""
    with pytest.raises(ValueError):
        MsisdnHasher(b"", "k1")


@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("abc", 479470107),
    ],
)
def test_partition_for_matches_kafka_java_default_partitioner(key: str, java_murmur2: int) -> None:
    """partition_for is Java's murmur2 partitioner (vectors from Kafka's UtilsTest)."""
    for n in (1, 3, 8, 1000):
        assert partition_for(key, n) == (java_murmur2 & 0x7FFFFFFF) % n


@given(msisdns, st.integers(min_value=1, max_value=1024))
def test_partition_for_is_in_range_and_deterministic(msisdn: str, n: int) -> None:
    """The partition of a msisdn is within [0, n) and always the same."""
    p = partition_for(msisdn, n)
    assert 0 <= p < n
    assert partition_for(msisdn, n) == p


@given(st.binary(max_size=64))
def test_murmur2_equals_kafka_python_s(data: bytes) -> None:
    """smsmon's faster murmur2 gives kafka-python's result for any bytes (every tail length)."""
    from kafka.partitioner.default import murmur2 as reference

    from smsmon.contract.canonical import murmur2

    assert murmur2(data) == reference(data)


@given(st.binary(min_size=11, max_size=11) | msisdns.map(str.encode))
def test_murmur2_of_eleven_bytes_equals_kafka_python_s(data: bytes) -> None:
    """The unrolled path of an 11-byte key (a canonical msisdn) is kafka-python's too."""
    from kafka.partitioner.default import murmur2 as reference

    from smsmon.contract.canonical import murmur2

    assert murmur2(data) == reference(data)


# -- state_json: compact_json's bytes, msgspec's speed ---------------------------------------

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
)
_tree = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=2_000, deadline=None)
@given(_tree)
def test_state_json_writes_compact_jsons_bytes_and_reads_back_the_same(value: object) -> None:
    import json

    from smsmon.contract.canonical import compact_json, read_json, state_json

    raw = state_json(value)
    assert raw == compact_json(value)
    assert read_json(raw) == json.loads(raw) == value


def test_state_json_writes_named_tuples_as_the_lists_of_their_fields() -> None:
    from smsmon.contract.canonical import compact_json, state_json
    from smsmon.rules.consent import RecentSender

    rows = [
        RecentSender("1069", "ent", 1_790_000_000_000, "【淘宝】", 5),
        RecentSender("1", "e", 2),
    ]
    assert state_json(rows) == compact_json([list(r) for r in rows])


def test_the_memos_of_hashes_and_partitions_stay_bounded_and_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smsmon.contract import canonical

    monkeypatch.setattr(canonical, "_MEMO_MAX", 64)
    monkeypatch.setattr(canonical, "_PARTITIONS", {})
    hasher = canonical.MsisdnHasher(b"secret", "k1")
    numbers = [f"138{n:08d}" for n in range(0, 1_000, 3)] * 2
    for m in numbers:
        want = (canonical.murmur2(m.encode()) & 0x7FFFFFFF) % 12
        assert canonical.partition_for(m, 12) == want
        digest = hmac.digest(b"secret", m.encode(), "sha256").hex()
        assert hasher(m) == f"k1:{digest}"
    assert len(canonical._PARTITIONS) <= 64
    assert len(hasher._memo) <= 64


@given(st.lists(st.text(max_size=40), min_size=1, max_size=6))
def test_folded_is_nfkc_then_casefold_whatever_came_before(texts: list[str]) -> None:
    """`folded` remembers its last text by identity: a text, the same object again, equal
    texts in other objects and others in between all get NFKC + case-fold of themselves."""
    for text in texts + texts[::-1] + [t + "" for t in texts]:
        assert folded(text) == unicodedata.normalize("NFKC", text).casefold()
        assert folded(text) == unicodedata.normalize("NFKC", text).casefold()


def test_every_second_character_of_a_composition_is_one_folded_treats_as_contextual() -> None:
    """`folded` goes character by character only where no character could compose with the
    one before it. Over all of Unicode (this Python's database): the second character of
    every two-character canonical decomposition is a mark (category M or a non-zero
    combining class) or a Hangul jamo, which `_fold_char` reports as contextual."""
    from smsmon.contract.canonical import _CONTEXTUAL, _fold_char

    seconds = set()
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<") and len(d.split()) == 2:
            seconds.add(chr(int(d.split()[1], 16)))
    assert len(seconds) > 50  # the database was read
    for ch in seconds:
        assert _fold_char(ch) == _CONTEXTUAL, f"U+{ord(ch):04X}"
    # Hangul: L + V and LV + T compose algorithmically, not by decomposition mappings
    for cp in (*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)):
        assert _fold_char(chr(cp)) == _CONTEXTUAL, f"U+{cp:04X}"


def test_folded_agrees_with_unicodedata_on_every_character_and_their_pairs() -> None:
    """Each BMP character alone, and after a letter and before a mark, folds as
    `normalize("NFKC", ...).casefold()` does."""
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        for text in (ch, "a" + ch, ch + "\u0301", "가" + ch, ch + "あ"):
            assert folded(text) == unicodedata.normalize("NFKC", text).casefold(), hex(cp)


# Chinese SMS text with full-width forms, compatibility characters, marks and jamo mixed in
_SMS_CHARS = st.sampled_from(
    [
        *"【】淘宝退订回复拒收，。！：“”（）ＴＤｔｄ０１２３ＡＢ㈱㍿ﬁ⑩ｶﾞｶﾟ",
        *("\u0301", "\u0308", "\u3099", "\u309a", "\u1161", "\u11a8", "\u200b", "\uffff"),
        "가",
        "e",
    ]
)


@given(st.lists(st.text(_SMS_CHARS, max_size=30) | st.text(max_size=30), min_size=1, max_size=4))
def test_folded_of_sms_like_text_is_nfkc_then_casefold(texts: list[str]) -> None:
    for text in texts:
        assert folded(text) == unicodedata.normalize("NFKC", text).casefold()
