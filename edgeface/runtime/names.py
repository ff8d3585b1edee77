"""Identity names that cannot lie about who they are (issue 37).

A gallery answers with a name, so two identities must never display alike, and no identity may
display as the word identify() answers for a stranger ("unknown"). Three rules, applied to every
name a gallery stores (Gallery.add / add_many / rename, FaceRecognizer.enroll, `edgeface enroll`):

1. No invisible characters: Unicode format characters (category Cf: U+200B zero-width space,
   U+00AD soft hyphen, U+200D zero-width joiner, bidi marks, tags, ...) and the other
   default-ignorable code points (DEFAULT_IGNORABLE: variation selectors, Hangul fillers,
   U+034F, ...) display as nothing, so "unknown\\u200b" looks like "unknown" and a name of only
   U+00AD looks like an empty one. A name needs at least one visible letter, digit or symbol.
2. One script per word among the scripts whose letters look alike (Latin, Cyrillic, Greek,
   Armenian, Cherokee, Coptic): "J\\u043es\\u00e9" (Cyrillic о inside a Latin word) is refused
   whether or not a "José" exists yet.
3. Not confusable with a reserved word or an enrolled name: `skeletons` maps a name through
   NFKC, a small table of look-alike letters (CONFUSABLES: the Cyrillic, Greek and Latin
   letters and digits Unicode's confusables.txt lists as prototypes of Latin ones) and
   whitespace folding, once keeping case and once case-folded. Two names sharing a skeleton
   display alike ("Jose"/"Jоse", "Ian"/"lan", "ALICE"/"Alice") and are one identity to a person
   reading the output: the second is refused. This is the UTS #39 skeleton idea restricted to
   the scripts above, small enough to port to the SDKs (no dependency; the table is the spec).
"""
from __future__ import annotations

import functools
import unicodedata

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties) outside category Cf, which rule 1
# refuses as a whole: these are Mn / Lo / Cn code points that render as nothing.
DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x3164, 0x3164), (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)

# Letters of these scripts are drawn from the same shapes: mixing them inside one word is the
# homoglyph trick, not a real name.
LOOKALIKE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC")

# character -> the Latin letter (or digit) it is confused with. From Unicode's confusables.txt
# (prototype = Latin), restricted to Cyrillic, Greek, Armenian and Latin look-alikes and digits.
_PAIRS = {
    # Cyrillic capitals and small letters
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "У": "Y",
    "Ѕ": "S", "І": "l", "Ј": "J", "Ԛ": "Q", "Ԝ": "W", "Ү": "Y", "Ӏ": "l", "Ԁ": "d", "Ꙇ": "l",
    "а": "a", "в": "B", "е": "e", "к": "K", "м": "M", "н": "H", "о": "o", "р": "p", "с": "c", "т": "T", "х": "x", "у": "y",
    "ѕ": "s", "і": "i", "ј": "j", "ԛ": "q", "ԝ": "w", "ү": "y", "ӏ": "l", "ԁ": "d", "һ": "h", "ɡ": "g", "ԍ": "G", "ѵ": "v",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "l", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T",
    "Υ": "Y", "Χ": "X", "ϲ": "c", "Ϲ": "C", "ϳ": "j", "Ϳ": "J",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "K", "τ": "T", "υ": "u", "χ": "x", "γ": "y", "ε": "e", "η": "n",
    # Armenian
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "զ": "q", "Տ": "S", "Օ": "O", "Ս": "U",
    # Latin look-alikes of other Latin letters, and digits
    "ı": "i", "ɩ": "i", "ɑ": "a", "ɒ": "a", "ǀ": "l", "ſ": "f", "ʟ": "L", "ɪ": "l", "ᴏ": "o", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ꜱ": "s",
    "ɴ": "N", "ʀ": "R", "ʙ": "B", "ᴄ": "c", "ᴅ": "D", "ᴇ": "E", "ᴊ": "J", "ᴋ": "K", "ᴍ": "M", "ᴘ": "P", "ᴛ": "T", "ᴜ": "u",
    "I": "l", "|": "l", "1": "l", "0": "O", "5": "S", "8": "B",
}
# names are compared in NFD, so accented look-alikes (ё, ό) reach the table as base letter + mark
CONFUSABLES: dict[str, str] = dict(_PAIRS)
assert all(len(unicodedata.normalize("NFD", k)) == 1 for k in CONFUSABLES)

RESERVED = ("unknown",)  # the word identify() prints for a stranger (gallery.UNKNOWN)


def _ignorable(c: str) -> bool:
    o = ord(c)
    return unicodedata.category(c) == "Cf" or any(lo <= o <= hi for lo, hi in DEFAULT_IGNORABLE)


def invisible_characters(name: str) -> list[str]:
    """The format / default-ignorable characters in `name`, as U+XXXX."""
    return sorted({f"U+{ord(c):04X}" for c in name if _ignorable(c)})


def _script(c: str) -> str | None:
    if not unicodedata.category(c).startswith("L"):
        return None
    word = unicodedata.name(c, "").split(" ")[0]
    return word if word in LOOKALIKE_SCRIPTS else None


def mixed_script_word(name: str) -> tuple[str, list[str]] | None:
    """(word, its scripts) for the first word mixing letters of two LOOKALIKE_SCRIPTS, or None."""
    for word in name.split():
        scripts = sorted({s for s in map(_script, word) if s})
        if len(scripts) > 1:
            return word, scripts
    return None


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[dict, dict]:
    """str.translate tables: (every format / default-ignorable code point -> removed, CONFUSABLES).
    Category Cf lies in planes 0, 1 and 14 only; scanning them once costs ~30 ms."""
    drop: dict[int, None] = {o: None for o in range(0x20000) if unicodedata.category(chr(o)) == "Cf"}
    drop.update({o: None for o in range(0xE0000, 0xE1000)})
    drop.update({o: None for lo, hi in DEFAULT_IGNORABLE for o in range(lo, hi + 1)})
    return drop, {ord(k): v for k, v in CONFUSABLES.items()}


def skeletons(name: str) -> tuple[str, str]:
    """(case-keeping, case-folded) skeletons: names that share either display alike. C-speed
    (str.translate; ASCII names skip the normalisations, which leave them unchanged): the gallery
    computes them for every enrolled name on each write."""
    drop, conf = _tables()
    ascii_only = name.isascii()
    s = name if ascii_only else unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name)).translate(drop)
    s = " ".join(s.split())  # any run of spaces reads as one
    folded = s.casefold()
    if not ascii_only:
        folded = unicodedata.normalize("NFD", folded)
    return s.translate(conf), folded.translate(conf).casefold()


def confusable(a: str, b: str) -> bool:
    """Whether two names display alike (share a skeleton)."""
    ka, fa = skeletons(a)
    kb, fb = skeletons(b)
    return ka == kb or fa == fb


def check_visible(name: str) -> None:
    """Raise ValueError for rules 1 and 2 and for a name confusable with a RESERVED word."""
    bad = invisible_characters(name)
    if bad:
        raise ValueError(f"identity name {name!r} contains invisible (format / default-ignorable) characters {bad}: it would display as "
                         "another name")
    if not any(unicodedata.category(c)[0] in "LNSP" for c in name):
        raise ValueError(f"identity name {name!r} has no visible letter, digit or symbol")
    mixed = mixed_script_word(name)
    if mixed:
        raise ValueError(f"identity name {name!r}: the word {mixed[0]!r} mixes {' and '.join(s.title() for s in mixed[1])} letters, which "
                         "look alike (a homoglyph of another name); write it in one script")
    for word in RESERVED:
        if confusable(name, word):
            raise ValueError(f"{name!r} is reserved: it displays as {word!r}, the answer identify gives for a face that matches nobody")


def find_confusable(name: str, existing, same_identity=()) -> str | None:
    """The first name of `existing` (other than `name` itself and `same_identity`) that displays
    like `name`, or None. O(len(existing)) skeletons."""
    ka, fa = skeletons(name)
    skip = {name, *same_identity}
    for other in existing:
        if not isinstance(other, str) or other in skip:
            continue
        kb, fb = skeletons(other)
        if ka == kb or fa == fb:
            return other
    return None
