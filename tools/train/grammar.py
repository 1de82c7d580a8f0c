"""English -> German template grammar for a synthetic speech-translation corpus.

The repo owns this grammar so that a small speech-translation model can be
trained and evaluated on a corpus whose every sentence is known to be correct.

Contract
--------
* ``generate_corpus(seed, n_train, n_test)`` is deterministic: the same seed
  and sizes always give the same two lists (only ``random.Random(seed)`` is
  used, never the global generator, and no set iteration order leaks into the
  output).
* Every English sentence appears at most once in the whole corpus; no test
  sentence appears in the training list.
* Held-out property: every template and every word (English and German) that
  occurs in the test list also occurs in the training list.  Test sentences
  are new combinations of known parts, spread over the templates in
  proportion to how often each template was sampled.
* The English side is text-to-speech input (espeak-ng): lowercase ``a-z``
  words separated by single spaces, numbers spelled out ("twenty five",
  "at half past three", "at seven oh five", "o clock" for o'clock), 3 to 14
  words per sentence.
* The German side is the one and only translation of the English sentence:
  correct, capitalised, ending in "." or "?", numbers written as words
  ("fünfundzwanzig", "halb vier", "am dritten Mai"), UTF-8 umlauts and ß.

Layout: number and calendar helpers, small inflection helpers (articles,
possessives, adjective endings, verb forms), vocabulary tables, then one
``render_*`` function per template (explicit arguments -> pair) and one
``sample_*`` function that draws those arguments from a ``random.Random``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

Pair = tuple[str, str]  # (english, german)
Phrase = tuple[str, str]  # an (english, german) fragment of a sentence
LabelledPair = tuple[str, Pair]  # (template name, pair)

MIN_ENGLISH_WORDS = 3
MAX_ENGLISH_WORDS = 14
# A request larger than this is refused up front: the grammar is finite and
# sampling ever rarer new sentences would only get slower.
MAX_CORPUS_SIZE = 100_000
# A template whose last this-many draws were all duplicates counts as used up.
MAX_CONSECUTIVE_DUPLICATES = 300

_ENGLISH_SENTENCE = re.compile(r"[a-z]+( [a-z]+)*")
_GERMAN_PUNCTUATION = ".?,!"


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------

_EN_UNDER_TWENTY = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty",
            6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}
_DE_UNDER_TWENTY = (
    "null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf "
    "dreizehn vierzehn fünfzehn sechzehn siebzehn achtzehn neunzehn"
).split()
_DE_TENS = {2: "zwanzig", 3: "dreißig", 4: "vierzig", 5: "fünfzig",
            6: "sechzig", 7: "siebzig", 8: "achtzig", 9: "neunzig"}


def _require_range(value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high}, got {value}")


def english_number(n: int) -> str:
    """0..999 as English words: 'twenty five', 'five hundred'."""
    _require_range(n, 0, 999, "number")
    if n >= 100:
        hundreds, rest = divmod(n, 100)
        words = f"{_EN_UNDER_TWENTY[hundreds]} hundred"
        return words if rest == 0 else f"{words} and {english_number(rest)}"
    if n < 20:
        return _EN_UNDER_TWENTY[n]
    tens, unit = divmod(n, 10)
    if unit == 0:
        return _EN_TENS[tens]
    return f"{_EN_TENS[tens]} {_EN_UNDER_TWENTY[unit]}"


def german_number(n: int) -> str:
    """0..999 as one German word: 'eins', 'einundzwanzig', 'fünfhundert'."""
    _require_range(n, 0, 999, "number")
    if n >= 100:
        hundreds, rest = divmod(n, 100)
        prefix = "hundert" if hundreds == 1 else _DE_UNDER_TWENTY[hundreds] + "hundert"
        return prefix if rest == 0 else prefix + german_number(rest)
    if n < 20:
        return _DE_UNDER_TWENTY[n]
    tens, unit = divmod(n, 10)
    if unit == 0:
        return _DE_TENS[tens]
    unit_word = "ein" if unit == 1 else _DE_UNDER_TWENTY[unit]
    return f"{unit_word}und{_DE_TENS[tens]}"


_EN_ORDINAL_UNDER_TWENTY = (None, *(
    "first second third fourth fifth sixth seventh eighth ninth tenth "
    "eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth "
    "eighteenth nineteenth"
).split())
_EN_ORDINAL_TENS = {2: "twentieth", 3: "thirtieth", 4: "fortieth", 5: "fiftieth",
                    6: "sixtieth", 7: "seventieth", 8: "eightieth", 9: "ninetieth"}
_DE_IRREGULAR_ORDINAL_STEMS = {1: "erst", 3: "dritt", 7: "siebt", 8: "acht"}


def english_ordinal(n: int) -> str:
    """1..99 as English ordinal words: 'third', 'twenty first'."""
    _require_range(n, 1, 99, "ordinal")
    if n < 20:
        return _EN_ORDINAL_UNDER_TWENTY[n]
    tens, unit = divmod(n, 10)
    if unit == 0:
        return _EN_ORDINAL_TENS[tens]
    return f"{_EN_TENS[tens]} {_EN_ORDINAL_UNDER_TWENTY[unit]}"


def german_ordinal(n: int, ending: str = "en") -> str:
    """1..99 as an inflected German ordinal; the default ending "en" is the
    form after 'am'/'im' (dative): 'ersten', 'dritten', 'zwanzigsten'."""
    _require_range(n, 1, 99, "ordinal")
    if n in _DE_IRREGULAR_ORDINAL_STEMS:
        stem = _DE_IRREGULAR_ORDINAL_STEMS[n]
    elif n < 20:
        stem = german_number(n) + "t"
    else:
        stem = german_number(n) + "st"
    return stem + ending


def english_year(year: int) -> str:
    """1950..2029 the way years are spoken: 'nineteen eighty four',
    'two thousand and five', 'twenty twelve'."""
    _require_range(year, 1950, 2029, "year")
    if year < 2000:
        return f"nineteen {english_number(year - 1900)}"
    if year == 2000:
        return "two thousand"
    if year < 2010:
        return f"two thousand and {english_number(year - 2000)}"
    return f"twenty {english_number(year - 2000)}"


def german_year(year: int) -> str:
    """1950..2029 as one German word: 'neunzehnhundertvierundachtzig'."""
    _require_range(year, 1950, 2029, "year")
    century, rest = divmod(year, 100)
    prefix = "neunzehnhundert" if century == 19 else "zweitausend"
    return prefix if rest == 0 else prefix + german_number(rest)


# --------------------------------------------------------------------------
# Calendar and clock
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Month:
    en: str
    de: str
    days: int  # February has 29 here; callers that add a year pass max 28


MONTHS = (
    Month("january", "Januar", 31), Month("february", "Februar", 29),
    Month("march", "März", 31), Month("april", "April", 30),
    Month("may", "Mai", 31), Month("june", "Juni", 30),
    Month("july", "Juli", 31), Month("august", "August", 31),
    Month("september", "September", 30), Month("october", "Oktober", 31),
    Month("november", "November", 30), Month("december", "Dezember", 31),
)
WEEKDAYS = (("monday", "Montag"), ("tuesday", "Dienstag"), ("wednesday", "Mittwoch"),
            ("thursday", "Donnerstag"), ("friday", "Freitag"), ("saturday", "Samstag"),
            ("sunday", "Sonntag"))


def month_named(english: str) -> Month:
    for month in MONTHS:
        if month.en == english:
            return month
    raise ValueError(f"unknown month {english!r}")


def date_phrase(day: int, month: Month) -> Phrase:
    """('on the third of may', 'am dritten Mai')."""
    _require_range(day, 1, month.days, f"day of {month.en}")
    return (f"on the {english_ordinal(day)} of {month.en}",
            f"am {german_ordinal(day)} {month.de}")


def weekday_phrase(weekday: int) -> Phrase:
    """('on monday', 'am Montag')."""
    en, de = WEEKDAYS[weekday]
    return f"on {en}", f"am {de}"


def habitual_weekday_phrase(weekday: int) -> Phrase:
    """('on mondays', 'montags')."""
    en, de = WEEKDAYS[weekday]
    return f"on {en}s", de.lower() + "s"


CLOCK_STYLES = ("o_clock", "quarter_past", "half_past", "quarter_to", "minutes")


def _german_hour(hour: int) -> str:
    """Hour name in 'Viertel nach eins', 'halb eins'."""
    return german_number(hour)


def _german_hour_before_uhr(hour: int) -> str:
    """Hour name before 'Uhr': 'ein Uhr', not 'eins Uhr'."""
    return "ein" if hour == 1 else german_number(hour)


def _next_hour(hour: int) -> int:
    return hour % 12 + 1


def clock_time(style: str, hour: int, minute: int = 0) -> Phrase:
    """A time of day on the 12-hour clock, without 'at'/'um'.

    Styles: o_clock ('seven o clock' / 'sieben Uhr'), quarter_past
    ('Viertel nach sieben'), half_past ('half past seven' / 'halb acht'),
    quarter_to ('Viertel vor acht' for 'quarter to eight') and minutes
    ('seven fifteen' / 'sieben Uhr fünfzehn', 'seven oh five' /
    'sieben Uhr fünf')."""
    _require_range(hour, 1, 12, "hour")
    if style == "o_clock":
        return f"{english_number(hour)} o clock", f"{_german_hour_before_uhr(hour)} Uhr"
    if style == "quarter_past":
        return f"quarter past {english_number(hour)}", f"Viertel nach {_german_hour(hour)}"
    if style == "half_past":
        return (f"half past {english_number(hour)}",
                f"halb {_german_hour(_next_hour(hour))}")
    if style == "quarter_to":
        return f"quarter to {english_number(hour)}", f"Viertel vor {_german_hour(hour)}"
    if style == "minutes":
        _require_range(minute, 1, 59, "minute")
        minute_en = english_number(minute)
        if minute < 10:
            minute_en = "oh " + minute_en
        return (f"{english_number(hour)} {minute_en}",
                f"{_german_hour_before_uhr(hour)} Uhr {german_number(minute)}")
    raise ValueError(f"unknown clock style {style!r}")


def at_time(style: str, hour: int, minute: int = 0) -> Phrase:
    """('at half past four', 'um halb fünf')."""
    en, de = clock_time(style, hour, minute)
    return f"at {en}", f"um {de}"


def sample_clock_time(rng: random.Random) -> tuple[str, int, int]:
    style = rng.choice(CLOCK_STYLES)
    minute = rng.randint(1, 59) if style == "minutes" else 0
    return style, rng.randint(1, 12), minute


# --------------------------------------------------------------------------
# Nouns, determiners, adjectives
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Noun:
    en: str
    en_plural: str
    de: str
    de_plural: str
    gender: str  # "m", "f" or "n"

    def slot(self, plural: bool) -> str:
        """Key into the inflection tables: the gender, or 'pl'."""
        return "pl" if plural else self.gender

    def english(self, plural: bool) -> str:
        return self.en_plural if plural else self.en

    def german(self, plural: bool) -> str:
        return self.de_plural if plural else self.de


def _nouns(*rows: tuple[str, str, str, str, str]) -> tuple[Noun, ...]:
    return tuple(Noun(*row) for row in rows)


_DEFINITE_ARTICLES = {
    "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
}
# Endings of 'ein' and the possessives (mein, dein, sein, ihr, unser).
_EIN_WORD_ENDINGS = {
    "nom": {"m": "", "f": "e", "n": "", "pl": "e"},
    "acc": {"m": "en", "f": "e", "n": "", "pl": "e"},
}
_DIESER_ENDINGS = {
    "nom": {"m": "er", "f": "e", "n": "es", "pl": "e"},
    "acc": {"m": "en", "f": "e", "n": "es", "pl": "e"},
}
# Adjective endings: weak after der/dieser, mixed after ein-words, strong
# without a determiner (or after a number).
_ADJECTIVE_ENDINGS = {
    "weak": {
        "nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
        "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
    },
    "mixed": {
        "nom": {"m": "er", "f": "e", "n": "es", "pl": "en"},
        "acc": {"m": "en", "f": "e", "n": "es", "pl": "en"},
    },
    "strong": {
        "nom": {"m": "er", "f": "e", "n": "es", "pl": "e"},
        "acc": {"m": "en", "f": "e", "n": "es", "pl": "e"},
    },
}


@dataclass(frozen=True)
class Determiner:
    en: str          # before a singular noun: "the", "this", "a", "my"
    en_plural: str   # before a plural noun: "the", "these", "my"; "" if none
    kind: str        # "definite", "dieser" or "ein_word"
    stem: str = ""   # for ein-words: "ein", "mein", "dein", ...

    def english(self, plural: bool) -> str:
        return self.en_plural if plural else self.en

    def german(self, case: str, slot: str) -> str:
        if self.kind == "definite":
            return _DEFINITE_ARTICLES[case][slot]
        if self.kind == "dieser":
            return "dies" + _DIESER_ENDINGS[case][slot]
        return self.stem + _EIN_WORD_ENDINGS[case][slot]

    @property
    def adjective_declension(self) -> str:
        return "mixed" if self.kind == "ein_word" else "weak"


THE = Determiner("the", "the", "definite")
THIS = Determiner("this", "these", "dieser")
A = Determiner("a", "", "ein_word", "ein")
ONE = Determiner("one", "", "ein_word", "ein")
POSSESSIVES = (
    Determiner("my", "my", "ein_word", "mein"),
    Determiner("your", "your", "ein_word", "dein"),
    Determiner("his", "his", "ein_word", "sein"),
    Determiner("her", "her", "ein_word", "ihr"),
    Determiner("our", "our", "ein_word", "unser"),
)
MY, _, _, _, OUR = POSSESSIVES
SINGULAR_POSSESSIVES = POSSESSIVES[:4]


@dataclass(frozen=True)
class Adjective:
    en: str
    de: str          # predicative form: "teuer"
    de_stem: str = ""  # attributive stem when it differs: "teur"

    def attributive(self, declension: str, case: str, slot: str) -> str:
        return (self.de_stem or self.de) + _ADJECTIVE_ENDINGS[declension][case][slot]


COLOURS = (
    Adjective("red", "rot"), Adjective("blue", "blau"), Adjective("green", "grün"),
    Adjective("yellow", "gelb"), Adjective("black", "schwarz"), Adjective("white", "weiß"),
    Adjective("brown", "braun"), Adjective("grey", "grau"),
)
QUALITIES = (
    Adjective("new", "neu"), Adjective("old", "alt"), Adjective("cheap", "billig"),
    Adjective("expensive", "teuer", "teur"), Adjective("big", "groß"),
    Adjective("small", "klein"), Adjective("beautiful", "schön"),
)


def _english_article(article: str, next_word: str) -> str:
    if article == "a" and next_word[0] in "aeiou":
        return "an"
    return article


def noun_phrase(determiner: Optional[Determiner], adjectives: Sequence[Adjective],
                noun: Noun, plural: bool, case: str) -> Phrase:
    """'the red bag' -> 'die rote Tasche'; determiner None means a bare
    plural ('red shoes' -> 'rote Schuhe')."""
    slot = noun.slot(plural)
    en_words = [adjective.en for adjective in adjectives] + [noun.english(plural)]
    if determiner is None:
        declension, de_words = "strong", []
    else:
        declension = determiner.adjective_declension
        article = _english_article(determiner.english(plural), en_words[0])
        en_words.insert(0, article)
        de_words = [determiner.german(case, slot)]
    de_words += [adjective.attributive(declension, case, slot) for adjective in adjectives]
    de_words.append(noun.german(plural))
    return " ".join(en_words), " ".join(de_words)


def counted_noun_phrase(count: int, noun: Noun, case: str,
                        adjectives: Sequence[Adjective] = ()) -> Phrase:
    """'one apple' -> 'einen Apfel' (accusative); 'three red apples' ->
    'drei rote Äpfel'."""
    if count == 1:
        return noun_phrase(ONE, adjectives, noun, False, case)
    en, de = noun_phrase(None, adjectives, noun, True, case)
    return f"{english_number(count)} {en}", f"{german_number(count)} {de}"


# --------------------------------------------------------------------------
# Subjects and verbs
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Subject:
    en: str
    de: str      # lowercase unless it is a name; the sentence start is capitalised
    person: str  # "1s", "2s", "3s", "1p" or "3p"


PRONOUNS = (
    Subject("i", "ich", "1s"), Subject("you", "du", "2s"), Subject("he", "er", "3s"),
    Subject("she", "sie", "3s"), Subject("we", "wir", "1p"), Subject("they", "sie", "3p"),
)
PRONOUNS_WITHOUT_YOU = tuple(s for s in PRONOUNS if s.en != "you")


def regular_verb(stem: str) -> dict[str, str]:
    """Present tense of a regular German verb from its stem ('steh')."""
    return {"1s": stem + "e", "2s": stem + "st", "3s": stem + "t",
            "1p": stem + "en", "3p": stem + "en"}


def vowel_change_verb(stem: str, changed_stem: str, second_person: str) -> dict[str, str]:
    """Present tense with a stem change in du/er forms (fangen: fängst, fängt)."""
    return {"1s": stem + "e", "2s": second_person, "3s": changed_stem + "t",
            "1p": stem + "en", "3p": stem + "en"}


GERMAN_SEIN = {"1s": "bin", "2s": "bist", "3s": "ist", "1p": "sind", "3p": "sind"}
GERMAN_HABEN = {"1s": "habe", "2s": "hast", "3s": "hat", "1p": "haben", "3p": "haben"}
GERMAN_HAETTE = {"1s": "hätte", "2s": "hättest", "3s": "hätte", "1p": "hätten", "3p": "hätten"}
GERMAN_BRAUCHEN = regular_verb("brauch")
GERMAN_SUCHEN = regular_verb("such")
ENGLISH_BE = {"1s": "am", "2s": "are", "3s": "is", "1p": "are", "3p": "are"}
ENGLISH_WAS = {"1s": "was", "2s": "were", "3s": "was", "1p": "were", "3p": "were"}


def english_present(base: str, third_singular: str, person: str) -> str:
    return third_singular if person == "3s" else base


# --------------------------------------------------------------------------
# Vocabulary tables
# --------------------------------------------------------------------------

PRODUCE = _nouns(
    ("apple", "apples", "Apfel", "Äpfel", "m"),
    ("banana", "bananas", "Banane", "Bananen", "f"),
    ("orange", "oranges", "Orange", "Orangen", "f"),
    ("lemon", "lemons", "Zitrone", "Zitronen", "f"),
    ("pear", "pears", "Birne", "Birnen", "f"),
    ("peach", "peaches", "Pfirsich", "Pfirsiche", "m"),
    ("tomato", "tomatoes", "Tomate", "Tomaten", "f"),
    ("onion", "onions", "Zwiebel", "Zwiebeln", "f"),
    ("cucumber", "cucumbers", "Gurke", "Gurken", "f"),
    ("melon", "melons", "Melone", "Melonen", "f"),
    ("egg", "eggs", "Ei", "Eier", "n"),
    ("bread roll", "bread rolls", "Brötchen", "Brötchen", "n"),
)

ITEMS = _nouns(
    ("bag", "bags", "Tasche", "Taschen", "f"),
    ("jacket", "jackets", "Jacke", "Jacken", "f"),
    ("shirt", "shirts", "Hemd", "Hemden", "n"),
    ("dress", "dresses", "Kleid", "Kleider", "n"),
    ("hat", "hats", "Hut", "Hüte", "m"),
    ("coat", "coats", "Mantel", "Mäntel", "m"),
    ("skirt", "skirts", "Rock", "Röcke", "m"),
    ("shoe", "shoes", "Schuh", "Schuhe", "m"),
    ("umbrella", "umbrellas", "Regenschirm", "Regenschirme", "m"),
    ("car", "cars", "Auto", "Autos", "n"),
    ("bike", "bikes", "Fahrrad", "Fahrräder", "n"),
    ("chair", "chairs", "Stuhl", "Stühle", "m"),
    ("table", "tables", "Tisch", "Tische", "m"),
    ("lamp", "lamps", "Lampe", "Lampen", "f"),
    ("book", "books", "Buch", "Bücher", "n"),
    ("phone", "phones", "Telefon", "Telefone", "n"),
    ("sofa", "sofas", "Sofa", "Sofas", "n"),
)

RELATIVES = _nouns(
    ("mother", "mothers", "Mutter", "Mütter", "f"),
    ("father", "fathers", "Vater", "Väter", "m"),
    ("brother", "brothers", "Bruder", "Brüder", "m"),
    ("sister", "sisters", "Schwester", "Schwestern", "f"),
    ("son", "sons", "Sohn", "Söhne", "m"),
    ("daughter", "daughters", "Tochter", "Töchter", "f"),
    ("grandmother", "grandmothers", "Großmutter", "Großmütter", "f"),
    ("grandfather", "grandfathers", "Großvater", "Großväter", "m"),
    ("uncle", "uncles", "Onkel", "Onkel", "m"),
    ("aunt", "aunts", "Tante", "Tanten", "f"),
    ("wife", "wives", "Frau", "Frauen", "f"),
    ("husband", "husbands", "Mann", "Männer", "m"),
    ("child", "children", "Kind", "Kinder", "n"),
)
_RELATIVES_BY_NAME = {noun.en: noun for noun in RELATIVES}
SHARED_RELATIVES = tuple(noun for noun in RELATIVES if noun.en not in ("wife", "husband"))
# Youngest age used for a relative in "my father is ... years old".
MINIMUM_AGE = {"mother": 20, "father": 20, "grandmother": 45, "grandfather": 45,
               "uncle": 18, "aunt": 18, "wife": 18, "husband": 18}
# What "i have three ..." counts: relatives one can have several of, and pets.
COUNTABLE_FAMILY = tuple(_RELATIVES_BY_NAME[name] for name in (
    "brother", "sister", "son", "daughter", "child", "uncle", "aunt")) + _nouns(
    ("dog", "dogs", "Hund", "Hunde", "m"),
    ("cat", "cats", "Katze", "Katzen", "f"),
)

EVENTS = _nouns(
    ("meeting", "meetings", "Besprechung", "Besprechungen", "f"),
    ("party", "parties", "Party", "Partys", "f"),
    ("concert", "concerts", "Konzert", "Konzerte", "n"),
    ("exam", "exams", "Prüfung", "Prüfungen", "f"),
    ("appointment", "appointments", "Termin", "Termine", "m"),
    ("wedding", "weddings", "Hochzeit", "Hochzeiten", "f"),
    ("film", "films", "Film", "Filme", "m"),
    ("game", "games", "Spiel", "Spiele", "n"),
    ("course", "courses", "Kurs", "Kurse", "m"),
    ("dinner", "dinners", "Abendessen", "Abendessen", "n"),
)
EVENT_VERBS = (("is", "ist"), ("starts", "beginnt"), ("ends", "endet"))

PLACES = _nouns(
    ("bank", "banks", "Bank", "Banken", "f"),
    ("museum", "museums", "Museum", "Museen", "n"),
    ("library", "libraries", "Bibliothek", "Bibliotheken", "f"),
    ("pharmacy", "pharmacies", "Apotheke", "Apotheken", "f"),
    ("supermarket", "supermarkets", "Supermarkt", "Supermärkte", "m"),
    ("bakery", "bakeries", "Bäckerei", "Bäckereien", "f"),
    ("post office", "post offices", "Post", "Posten", "f"),
    ("swimming pool", "swimming pools", "Schwimmbad", "Schwimmbäder", "n"),
    ("restaurant", "restaurants", "Restaurant", "Restaurants", "n"),
    ("shop", "shops", "Geschäft", "Geschäfte", "n"),
)
OPENING_VERBS = (("opens", "öffnet"), ("closes", "schließt"))

ROOMS = _nouns(
    ("room", "rooms", "Zimmer", "Zimmer", "n"),
    ("office", "offices", "Büro", "Büros", "n"),
    ("apartment", "apartments", "Wohnung", "Wohnungen", "f"),
    ("kitchen", "kitchens", "Küche", "Küchen", "f"),
    ("bathroom", "bathrooms", "Badezimmer", "Badezimmer", "n"),
)


@dataclass(frozen=True)
class Vehicle:
    noun: Noun
    departs: tuple[str, str]  # German finite verb and separable particle
    long_distance: bool       # only these get 'to berlin' / 'from berlin'


ARRIVES = ("kommt", "an")
VEHICLES = (
    Vehicle(Noun("train", "trains", "Zug", "Züge", "m"), ("fährt", "ab"), True),
    Vehicle(Noun("bus", "buses", "Bus", "Busse", "m"), ("fährt", "ab"), True),
    Vehicle(Noun("plane", "planes", "Flugzeug", "Flugzeuge", "n"), ("fliegt", "ab"), True),
    Vehicle(Noun("tram", "trams", "Straßenbahn", "Straßenbahnen", "f"), ("fährt", "ab"), False),
    Vehicle(Noun("ferry", "ferries", "Fähre", "Fähren", "f"), ("fährt", "ab"), False),
)
VEHICLE_ORDER = (Adjective("next", "nächst"), Adjective("last", "letzt"),
                 Adjective("first", "erst"))

CITIES = (("berlin", "Berlin"), ("hamburg", "Hamburg"), ("munich", "München"),
          ("vienna", "Wien"), ("cologne", "Köln"), ("paris", "Paris"),
          ("london", "London"), ("rome", "Rom"), ("zurich", "Zürich"),
          ("frankfurt", "Frankfurt"), ("madrid", "Madrid"), ("prague", "Prag"))


@dataclass(frozen=True)
class Unit:
    noun: Noun               # de_plural is the form after a number: "zwei Kilo"
    substances: tuple[str, ...]
    counts: tuple[int, ...]


SUBSTANCES = {
    "potatoes": "Kartoffeln", "apples": "Äpfel", "tomatoes": "Tomaten",
    "onions": "Zwiebeln", "rice": "Reis", "flour": "Mehl", "sugar": "Zucker",
    "meat": "Fleisch", "cheese": "Käse", "butter": "Butter", "coffee": "Kaffee",
    "tea": "Tee", "milk": "Milch", "water": "Wasser", "juice": "Saft",
    "oil": "Öl", "wine": "Wein", "beer": "Bier",
}
_ONE_TO_TEN = tuple(range(1, 11))
UNITS = (
    Unit(Noun("kilogram", "kilograms", "Kilo", "Kilo", "n"),
         ("potatoes", "apples", "tomatoes", "onions", "rice", "flour", "sugar", "meat"),
         _ONE_TO_TEN),
    Unit(Noun("gram", "grams", "Gramm", "Gramm", "n"),
         ("cheese", "butter", "meat", "rice", "sugar", "coffee"),
         tuple(range(100, 1000, 100))),
    Unit(Noun("liter", "liters", "Liter", "Liter", "m"),
         ("milk", "water", "juice", "oil"), _ONE_TO_TEN),
    Unit(Noun("bottle", "bottles", "Flasche", "Flaschen", "f"),
         ("water", "milk", "juice", "wine", "beer", "oil"), _ONE_TO_TEN),
    Unit(Noun("packet", "packets", "Packung", "Packungen", "f"),
         ("rice", "flour", "sugar", "coffee", "tea", "butter"), _ONE_TO_TEN),
    Unit(Noun("cup", "cups", "Tasse", "Tassen", "f"), ("coffee", "tea"), _ONE_TO_TEN),
)


@dataclass(frozen=True)
class Activity:
    """A daily routine: 'get up' -> 'ich stehe ... auf'."""
    en_base: str
    en_third: str
    de_forms: dict
    de_tail: str  # what closes the German sentence: particle or complement


ACTIVITIES = (
    Activity("get up", "gets up", regular_verb("steh"), "auf"),
    Activity("go to bed", "goes to bed", regular_verb("geh"), "ins Bett"),
    Activity("have breakfast", "has breakfast", regular_verb("frühstück"), ""),
    Activity("have lunch", "has lunch",
             {"1s": "esse", "2s": "isst", "3s": "isst", "1p": "essen", "3p": "essen"},
             "zu Mittag"),
    Activity("have dinner", "has dinner",
             {"1s": "esse", "2s": "isst", "3s": "isst", "1p": "essen", "3p": "essen"},
             "zu Abend"),
    Activity("start work", "starts work", vowel_change_verb("fang", "fäng", "fängst"),
             "mit der Arbeit an"),
    Activity("go to work", "goes to work", regular_verb("geh"), "zur Arbeit"),
    Activity("go to school", "goes to school", regular_verb("geh"), "zur Schule"),
    Activity("come home", "comes home", regular_verb("komm"), "nach Hause"),
    Activity("leave the house", "leaves the house",
             {"1s": "verlasse", "2s": "verlässt", "3s": "verlässt",
              "1p": "verlassen", "3p": "verlassen"}, "das Haus"),
)

WEATHER_ADJECTIVES = (
    Adjective("sunny", "sonnig"), Adjective("cold", "kalt"), Adjective("warm", "warm"),
    Adjective("hot", "heiß"), Adjective("windy", "windig"), Adjective("cloudy", "bewölkt"),
    Adjective("foggy", "neblig"), Adjective("wet", "nass"),
)


@dataclass(frozen=True)
class Precipitation:
    en_progressive: str  # "raining"
    en_base: str         # "rain"
    en_past: str         # "rained"
    de_present: str      # "regnet"
    de_infinitive: str   # "regnen"
    de_participle: str   # "geregnet"


PRECIPITATION = (
    Precipitation("raining", "rain", "rained", "regnet", "regnen", "geregnet"),
    Precipitation("snowing", "snow", "snowed", "schneit", "schneien", "geschneit"),
)
WEATHER_DAYS = (None, "today", "tomorrow", "yesterday")
_GERMAN_WEATHER_DAY = {"today": "heute", "tomorrow": "morgen", "yesterday": "gestern"}

DURATION_UNITS = {
    "minutes": (Noun("minute", "minutes", "Minute", "Minuten", "f"), 1, 59),
    "hours": (Noun("hour", "hours", "Stunde", "Stunden", "f"), 1, 12),
    "days": (Noun("day", "days", "Tag", "Tage", "m"), 1, 14),
    "weeks": (Noun("week", "weeks", "Woche", "Wochen", "f"), 1, 8),
}
_TIMED_EVENTS = {noun.en: noun for noun in EVENTS}
# Things that last, with the units that suit them.
DURATION_SUBJECTS = (
    (_TIMED_EVENTS["film"], ("minutes", "hours")),
    (_TIMED_EVENTS["concert"], ("minutes", "hours")),
    (_TIMED_EVENTS["meeting"], ("minutes", "hours")),
    (_TIMED_EVENTS["course"], ("days", "weeks")),
    (Noun("trip", "trips", "Reise", "Reisen", "f"), ("hours", "days", "weeks")),
    (Noun("flight", "flights", "Flug", "Flüge", "m"), ("minutes", "hours")),
    (Noun("break", "breaks", "Pause", "Pausen", "f"), ("minutes",)),
    (Noun("holiday", "holidays", "Urlaub", "Urlaube", "m"), ("days", "weeks")),
)

ARITHMETIC_OPERATORS = {"plus": "plus", "minus": "minus", "times": "mal",
                        "divided by": "geteilt durch"}


# --------------------------------------------------------------------------
# Sentence assembly
# --------------------------------------------------------------------------

def _join(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def german_sentence(*parts: str, mark: str = ".") -> str:
    text = _join(*parts)
    return text[0].upper() + text[1:] + mark


def _maybe(rng: random.Random, probability: float = 0.5) -> bool:
    return rng.random() < probability


# --------------------------------------------------------------------------
# Templates: render_* builds a pair from explicit choices, sample_* draws them
# --------------------------------------------------------------------------

# --- shopping: "i would like three apples" ---------------------------------

def render_shopping(subject: Subject, items: Sequence[tuple[int, Noun]]) -> Pair:
    phrases = [counted_noun_phrase(count, noun, "acc") for count, noun in items]
    en = _join(subject.en, "would like", " and ".join(en for en, _ in phrases))
    de = german_sentence(subject.de, GERMAN_HAETTE[subject.person], "gern",
                         " und ".join(de for _, de in phrases))
    return en, de


def sample_shopping(rng: random.Random) -> Pair:
    nouns = rng.sample(PRODUCE, 2 if _maybe(rng) else 1)
    return render_shopping(rng.choice(PRONOUNS_WITHOUT_YOU),
                           [(rng.randint(1, 20), noun) for noun in nouns])


# --- groceries: "we need two kilograms of potatoes" ------------------------

def quantity_phrase(count: int, unit: Unit, substance: str) -> Phrase:
    """('two kilograms of potatoes', 'zwei Kilo Kartoffeln'), accusative."""
    measure_en, measure_de = counted_noun_phrase(count, unit.noun, "acc")
    return f"{measure_en} of {substance}", f"{measure_de} {SUBSTANCES[substance]}"


def render_groceries(subject: Subject, items: Sequence[tuple[int, Unit, str]]) -> Pair:
    phrases = [quantity_phrase(count, unit, substance) for count, unit, substance in items]
    verb = english_present("need", "needs", subject.person)
    en = _join(subject.en, verb, " and ".join(en for en, _ in phrases))
    de = german_sentence(subject.de, GERMAN_BRAUCHEN[subject.person],
                         " und ".join(de for _, de in phrases))
    return en, de


def sample_groceries(rng: random.Random) -> Pair:
    items = []
    for unit in rng.sample(UNITS, 2 if _maybe(rng) else 1):
        items.append((rng.choice(unit.counts), unit, rng.choice(unit.substances)))
    return render_groceries(rng.choice(PRONOUNS), items)


# --- prices: "the red shoes cost twelve euros fifty" -----------------------

def price_phrase(euros: int, cents: int) -> Phrase:
    """Object of 'kosten' (accusative): 'einen Euro fünfzig', 'fünfzig Cent'."""
    _require_range(euros, 0, 99, "euros")
    _require_range(cents, 0, 99, "cents")
    if euros == 0:
        if cents == 0:
            raise ValueError("a price must not be zero")
        return f"{english_number(cents)} cents", f"{german_number(cents)} Cent"
    if euros == 1:
        en, de = "one euro", "einen Euro"
    else:
        en, de = f"{english_number(euros)} euros", f"{german_number(euros)} Euro"
    if cents:
        en, de = f"{en} {english_number(cents)}", f"{de} {german_number(cents)}"
    return en, de


def render_price_statement(item: Optional[tuple[Optional[Adjective], Noun, bool]],
                           euros: int, cents: int) -> Pair:
    """item None means 'it'; otherwise (colour or None, noun, plural)."""
    if item is None:
        subject, plural = ("it", "es"), False
    else:
        colour, noun, plural = item
        subject = noun_phrase(THE, [colour] if colour else [], noun, plural, "nom")
    price_en, price_de = price_phrase(euros, cents)
    en = _join(subject[0], "cost" if plural else "costs", price_en)
    de = german_sentence(subject[1], "kosten" if plural else "kostet", price_de)
    return en, de


def sample_price_statement(rng: random.Random) -> Pair:
    item = None
    if _maybe(rng, 0.6):
        colour = rng.choice(COLOURS) if _maybe(rng) else None
        item = (colour, rng.choice(ITEMS), _maybe(rng))
    cents_only = item is None and _maybe(rng, 0.2)
    euros = 0 if cents_only else rng.randint(1, 99)
    cents = rng.randint(10, 99) if cents_only or _maybe(rng) else 0
    return render_price_statement(item, euros, cents)


def render_price_question(determiner: Determiner, adjective: Optional[Adjective],
                          noun: Noun, plural: bool) -> Pair:
    subject_en, subject_de = noun_phrase(determiner, [adjective] if adjective else [],
                                         noun, plural, "nom")
    en = _join("how much", "do" if plural else "does", subject_en, "cost")
    de = german_sentence("wie viel", "kosten" if plural else "kostet", subject_de, mark="?")
    return en, de


def sample_price_question(rng: random.Random) -> Pair:
    adjective = rng.choice(COLOURS + QUALITIES) if _maybe(rng) else None
    return render_price_question(rng.choice((THE, THIS)), adjective, rng.choice(ITEMS),
                                 _maybe(rng))


# --- vehicles: "the next train to berlin leaves at half past four" ---------

def vehicle_phrase(vehicle: Vehicle, order: Optional[Adjective],
                   city: Optional[tuple[str, str]], arrives: bool) -> Phrase:
    en, de = noun_phrase(THE, [order] if order else [], vehicle.noun, False, "nom")
    if city is not None:
        if not vehicle.long_distance:
            raise ValueError(f"a {vehicle.noun.en} does not go to another city")
        en += (" from " if arrives else " to ") + city[0]
        de += (" aus " if arrives else " nach ") + city[1]
    return en, de


def render_vehicle_schedule(vehicle: Vehicle, order: Optional[Adjective],
                            city: Optional[tuple[str, str]], arrives: bool,
                            weekday: Optional[int], time: Phrase) -> Pair:
    subject_en, subject_de = vehicle_phrase(vehicle, order, city, arrives)
    verb, particle = ARRIVES if arrives else vehicle.departs
    day_en, day_de = weekday_phrase(weekday) if weekday is not None else ("", "")
    en = _join(subject_en, "arrives" if arrives else "leaves", day_en, time[0])
    de = german_sentence(subject_de, verb, day_de, time[1], particle)
    return en, de


def render_vehicle_question(vehicle: Vehicle, order: Optional[Adjective],
                            city: Optional[tuple[str, str]], arrives: bool,
                            time: Optional[Phrase]) -> Pair:
    """'when does the bus leave' or 'does the bus leave at seven o clock'."""
    subject_en, subject_de = vehicle_phrase(vehicle, order, city, arrives)
    verb, particle = ARRIVES if arrives else vehicle.departs
    en_verb = "arrive" if arrives else "leave"
    if time is None:
        return (_join("when does", subject_en, en_verb),
                german_sentence("wann", verb, subject_de, particle, mark="?"))
    return (_join("does", subject_en, en_verb, time[0]),
            german_sentence(verb, subject_de, time[1], particle, mark="?"))


def _sample_vehicle(rng: random.Random) -> tuple:
    vehicle = rng.choice(VEHICLES)
    order = rng.choice(VEHICLE_ORDER) if _maybe(rng) else None
    city = rng.choice(CITIES) if vehicle.long_distance and _maybe(rng) else None
    return vehicle, order, city, _maybe(rng, 0.4)


def sample_vehicle_schedule(rng: random.Random) -> Pair:
    vehicle, order, city, arrives = _sample_vehicle(rng)
    weekday = rng.randrange(7) if _maybe(rng, 0.3) else None
    return render_vehicle_schedule(vehicle, order, city, arrives, weekday,
                                   at_time(*sample_clock_time(rng)))


def sample_vehicle_question(rng: random.Random) -> Pair:
    vehicle, order, city, arrives = _sample_vehicle(rng)
    time = at_time(*sample_clock_time(rng)) if _maybe(rng, 0.8) else None
    return render_vehicle_question(vehicle, order, city, arrives, time)


# --- events: "the meeting is on monday at nine o clock" --------------------

def render_event(determiner: Determiner, event: Noun, verb: tuple[str, str],
                 when: Sequence[Phrase]) -> Pair:
    subject_en, subject_de = noun_phrase(determiner, [], event, False, "nom")
    en = _join(subject_en, verb[0], *(phrase[0] for phrase in when))
    de = german_sentence(subject_de, verb[1], *(phrase[1] for phrase in when))
    return en, de


def sample_date(rng: random.Random, max_february_day: int = 29) -> Phrase:
    month = rng.choice(MONTHS)
    last_day = min(month.days, max_february_day) if month.en == "february" else month.days
    return date_phrase(rng.randint(1, last_day), month)


def sample_event(rng: random.Random) -> Pair:
    shape = rng.choice(("day", "date", "time", "day_time", "date_time"))
    when = []
    if shape.startswith("day"):
        when.append(weekday_phrase(rng.randrange(7)))
    if shape.startswith("date"):
        when.append(sample_date(rng))
    if shape.endswith("time"):
        when.append(at_time(*sample_clock_time(rng)))
    determiner = rng.choice((THE, THE, MY, OUR))
    return render_event(determiner, rng.choice(EVENTS), rng.choice(EVENT_VERBS), when)


# --- opening hours: "the bank opens on saturday at nine o clock" -----------

def render_opening_hours(place: Noun, verb: tuple[str, str], frequency: Optional[Phrase],
                         time: Phrase) -> Pair:
    subject_en, subject_de = noun_phrase(THE, [], place, False, "nom")
    frequency = frequency or ("", "")
    return (_join(subject_en, verb[0], frequency[0], time[0]),
            german_sentence(subject_de, verb[1], frequency[1], time[1]))


def sample_opening_hours(rng: random.Random) -> Pair:
    frequency = rng.choice((None, "weekday", "every day"))
    if frequency == "weekday":
        frequency = weekday_phrase(rng.randrange(7))
    elif frequency == "every day":
        frequency = ("every day", "jeden Tag")
    return render_opening_hours(rng.choice(PLACES), rng.choice(OPENING_VERBS), frequency,
                                at_time(*sample_clock_time(rng)))


# --- telling the time: "it is half past three" -----------------------------

def render_clock_time(time: Phrase) -> Pair:
    return f"it is {time[0]}", german_sentence("es ist", time[1])


def sample_clock(rng: random.Random) -> Pair:
    return render_clock_time(clock_time(*sample_clock_time(rng)))


# --- daily routine: "i get up every day at seven o clock" ------------------

def render_routine(subject: Subject, activity: Activity, frequency: Optional[Phrase],
                   time: Phrase) -> Pair:
    frequency = frequency or ("", "")
    verb_en = english_present(activity.en_base, activity.en_third, subject.person)
    return (_join(subject.en, verb_en, frequency[0], time[0]),
            german_sentence(subject.de, activity.de_forms[subject.person], frequency[1],
                            time[1], activity.de_tail))


def sample_routine(rng: random.Random) -> Pair:
    frequency = rng.choice((None, "weekdays", "every day"))
    if frequency == "weekdays":
        frequency = habitual_weekday_phrase(rng.randrange(7))
    elif frequency == "every day":
        frequency = ("every day", "jeden Tag")
    return render_routine(rng.choice(PRONOUNS), rng.choice(ACTIVITIES), frequency,
                          at_time(*sample_clock_time(rng)))


# --- birthdays: "my birthday is on the twelfth of june" --------------------

BIRTHDAY = Noun("birthday", "birthdays", "Geburtstag", "Geburtstage", "m")


def render_birthday(possessive: Determiner, date: Phrase) -> Pair:
    subject_en, subject_de = noun_phrase(possessive, [], BIRTHDAY, False, "nom")
    return _join(subject_en, "is", date[0]), german_sentence(subject_de, "ist", date[1])


def sample_birthday(rng: random.Random) -> Pair:
    return render_birthday(rng.choice(SINGULAR_POSSESSIVES), sample_date(rng))


# --- born: "i was born on the third of may nineteen eighty four" -----------

def relative_subject(possessive: Determiner, relative: Noun) -> Subject:
    en, de = noun_phrase(possessive, [], relative, False, "nom")
    return Subject(en, de, "3s")


def sample_relative(rng: random.Random) -> tuple[Determiner, Noun]:
    """A possessive and a relative that go together ('our wife' does not)."""
    possessive = rng.choice(POSSESSIVES)
    relatives = RELATIVES if possessive is not OUR else SHARED_RELATIVES
    return possessive, rng.choice(relatives)


def _sample_person_or_relative(rng: random.Random) -> Subject:
    if _maybe(rng):
        return rng.choice(PRONOUNS)
    return relative_subject(*sample_relative(rng))


def render_born(subject: Subject, date: Optional[Phrase], year: Optional[int]) -> Pair:
    if date is None and year is None:
        raise ValueError("'born' needs a date or a year")
    year_words = (english_year(year), german_year(year)) if year is not None else ("", "")
    if date is None:
        when_en, when_de = f"in {year_words[0]}", year_words[1]
    else:
        when_en, when_de = _join(date[0], year_words[0]), _join(date[1], year_words[1])
    return (_join(subject.en, ENGLISH_WAS[subject.person], "born", when_en),
            german_sentence(subject.de, GERMAN_SEIN[subject.person], when_de, "geboren"))


def sample_born(rng: random.Random) -> Pair:
    shape = rng.choice(("year", "date", "date_year"))
    date = sample_date(rng, max_february_day=28) if shape.startswith("date") else None
    year = rng.randint(1950, 2024) if shape.endswith("year") else None
    return render_born(_sample_person_or_relative(rng), date, year)


# --- age: "my brother is twenty five years old" ----------------------------

def render_age(subject: Subject, years: int) -> Pair:
    _require_range(years, 1, 99, "age")
    years_en = "one year" if years == 1 else f"{english_number(years)} years"
    years_de = "ein Jahr" if years == 1 else f"{german_number(years)} Jahre"
    return (_join(subject.en, ENGLISH_BE[subject.person], years_en, "old"),
            german_sentence(subject.de, GERMAN_SEIN[subject.person], years_de, "alt"))


def render_age_question(possessive: Determiner, relative: Noun) -> Pair:
    subject = relative_subject(possessive, relative)
    return f"how old is {subject.en}", german_sentence("wie alt ist", subject.de, mark="?")


def sample_age(rng: random.Random) -> Pair:
    if _maybe(rng, 0.1):
        return render_age_question(*sample_relative(rng))
    if _maybe(rng):
        return render_age(rng.choice(PRONOUNS), rng.randint(1, 99))
    possessive, relative = sample_relative(rng)
    years = rng.randint(MINIMUM_AGE.get(relative.en, 1), 99)
    return render_age(relative_subject(possessive, relative), years)


# --- family size: "i have three brothers and one sister" -------------------

def render_family(subject: Subject, members: Sequence[tuple[int, Noun]]) -> Pair:
    phrases = [counted_noun_phrase(count, noun, "acc") for count, noun in members]
    verb = english_present("have", "has", subject.person)
    return (_join(subject.en, verb, " and ".join(en for en, _ in phrases)),
            german_sentence(subject.de, GERMAN_HABEN[subject.person],
                            " und ".join(de for _, de in phrases)))


def sample_family(rng: random.Random) -> Pair:
    nouns = rng.sample(COUNTABLE_FAMILY, 2 if _maybe(rng) else 1)
    return render_family(rng.choice(PRONOUNS), [(rng.randint(1, 9), noun) for noun in nouns])


# --- weather: "it will be cold in berlin tomorrow" -------------------------

def _weather_frame(day: Optional[str], city: Optional[tuple[str, str]]) -> tuple[str, str, str]:
    """English tail, German fronted element and German place for a weather
    sentence: the day word goes first ('Heute ist es in Berlin kalt.'), else
    the city ('In Berlin ist es kalt.'), else nothing ('Es ist kalt.')."""
    city_en, city_de = (f"in {city[0]}", f"in {city[1]}") if city else ("", "")
    if day is None:
        return city_en, city_de, ""
    return _join(city_en, day), _GERMAN_WEATHER_DAY[day], city_de


def _weather_german(fronted: str, verb: str, *rest: str) -> str:
    """German word order with the dummy subject 'es': V2 after a fronted element."""
    if fronted:
        return german_sentence(fronted, verb, "es", *rest)
    return german_sentence("es", verb, *rest)


def render_weather_adjective(day: Optional[str], city: Optional[tuple[str, str]],
                             very: bool, adjective: Adjective) -> Pair:
    tail_en, fronted_de, city_de = _weather_frame(day, city)
    copula_en, copula_de = {None: ("is", "ist"), "today": ("is", "ist"),
                            "tomorrow": ("will be", "wird"),
                            "yesterday": ("was", "war")}[day]
    degree_en, degree_de = ("very", "sehr") if very else ("", "")
    return (_join("it", copula_en, degree_en, adjective.en, tail_en),
            _weather_german(fronted_de, copula_de, city_de, degree_de, adjective.de))


def render_weather_precipitation(day: Optional[str], city: Optional[tuple[str, str]],
                                 weather: Precipitation) -> Pair:
    tail_en, fronted_de, city_de = _weather_frame(day, city)
    if day in (None, "today"):
        return (_join("it is", weather.en_progressive, tail_en),
                _weather_german(fronted_de, weather.de_present, city_de))
    if day == "tomorrow":
        return (_join("it will", weather.en_base, tail_en),
                _weather_german(fronted_de, "wird", city_de, weather.de_infinitive))
    return (_join("it", weather.en_past, tail_en),
            _weather_german(fronted_de, "hat", city_de, weather.de_participle))


def sample_weather(rng: random.Random) -> Pair:
    day = rng.choice(WEATHER_DAYS)
    city = rng.choice(CITIES) if _maybe(rng) else None
    if _maybe(rng, 0.3):
        return render_weather_precipitation(day, city, rng.choice(PRECIPITATION))
    return render_weather_adjective(day, city, _maybe(rng, 0.3), rng.choice(WEATHER_ADJECTIVES))


# --- temperature: "it is twenty degrees in vienna today" -------------------

def render_temperature(day: Optional[str], city: Optional[tuple[str, str]],
                       degrees: int) -> Pair:
    """degrees in -30..40 without -1..1 (those would need the singular)."""
    if abs(degrees) < 2:
        raise ValueError("temperatures between minus one and one are not generated")
    if day == "tomorrow":
        raise ValueError("temperatures are only stated for today and yesterday")
    tail_en, fronted_de, city_de = _weather_frame(day, city)
    amount_en = ("minus " if degrees < 0 else "") + english_number(abs(degrees))
    amount_de = ("minus " if degrees < 0 else "") + german_number(abs(degrees))
    past = day == "yesterday"
    return (_join("it", "was" if past else "is", amount_en, "degrees", tail_en),
            _weather_german(fronted_de, "waren" if past else "sind", city_de, amount_de,
                            "Grad"))


def sample_temperature(rng: random.Random) -> Pair:
    degrees = rng.randint(2, 40) if _maybe(rng, 0.8) else -rng.randint(2, 30)
    city = rng.choice(CITIES) if _maybe(rng) else None
    return render_temperature(rng.choice((None, "today", "yesterday")), city, degrees)


# --- arithmetic: "three plus four is seven" --------------------------------

def render_arithmetic(left: int, operator: str, right: int) -> Pair:
    results = {"plus": lambda: left + right, "minus": lambda: left - right,
               "times": lambda: left * right,
               "divided by": lambda: left // right if right and left % right == 0 else -1}
    result = results[operator]()
    _require_range(result, 0, 99, f"result of {left} {operator} {right}")
    en = _join(english_number(left), operator, english_number(right), "is",
               english_number(result))
    de = german_sentence(german_number(left), ARITHMETIC_OPERATORS[operator],
                         german_number(right), "ist", german_number(result))
    return en, de


def sample_arithmetic(rng: random.Random) -> Pair:
    operator = rng.choice(tuple(ARITHMETIC_OPERATORS))
    if operator == "plus":
        left = rng.randint(0, 50)
        return render_arithmetic(left, operator, rng.randint(0, 99 - left))
    if operator == "minus":
        left = rng.randint(0, 99)
        return render_arithmetic(left, operator, rng.randint(0, min(left, 50)))
    right = rng.randint(1, 9)
    left = rng.randint(1, min(12, 99 // right))
    if operator == "times":
        return render_arithmetic(left, operator, right)
    return render_arithmetic(left * right, operator, right)


# --- duration: "the film lasts two hours and ten minutes" ------------------

def render_duration(subject: Noun, amounts: Sequence[tuple[int, str]]) -> Pair:
    subject_en, subject_de = noun_phrase(THE, [], subject, False, "nom")
    phrases = []
    for count, unit_name in amounts:
        unit, low, high = DURATION_UNITS[unit_name]
        _require_range(count, low, high, unit_name)
        phrases.append(counted_noun_phrase(count, unit, "acc"))
    return (_join(subject_en, "lasts", " and ".join(en for en, _ in phrases)),
            german_sentence(subject_de, "dauert", " und ".join(de for _, de in phrases)))


def sample_duration(rng: random.Random) -> Pair:
    subject, unit_names = rng.choice(DURATION_SUBJECTS)
    unit_name = rng.choice(unit_names)
    units = [unit_name]
    if unit_name == "hours" and "minutes" in unit_names and _maybe(rng):
        units.append("minutes")
    amounts = [(rng.randint(*DURATION_UNITS[name][1:]), name) for name in units]
    return render_duration(subject, amounts)


# --- floors: "my room is on the third floor" -------------------------------

def floor_phrase(floor: int) -> Phrase:
    if floor == 0:
        return "on the ground floor", "im Erdgeschoss"
    return f"on the {english_ordinal(floor)} floor", f"im {german_ordinal(floor)} Stock"


def render_floor(determiner: Determiner, room: Noun, floor: int) -> Pair:
    subject_en, subject_de = noun_phrase(determiner, [], room, False, "nom")
    where_en, where_de = floor_phrase(floor)
    return _join(subject_en, "is", where_en), german_sentence(subject_de, "ist", where_de)


def sample_floor(rng: random.Random) -> Pair:
    return render_floor(rng.choice((THE,) + POSSESSIVES), rng.choice(ROOMS),
                        rng.randint(0, 20))


# --- phone numbers: "my phone number is two five seven one" ----------------

PHONE_NUMBER = Noun("phone number", "phone numbers", "Telefonnummer", "Telefonnummern", "f")


def render_phone_number(possessive: Determiner, digits: Sequence[int]) -> Pair:
    subject_en, subject_de = noun_phrase(possessive, [], PHONE_NUMBER, False, "nom")
    return (_join(subject_en, "is", *(english_number(d) for d in digits)),
            german_sentence(subject_de, "ist", *(german_number(d) for d in digits)))


def sample_phone_number(rng: random.Random) -> Pair:
    digits = [rng.randrange(10) for _ in range(rng.randint(4, 8))]
    return render_phone_number(rng.choice(POSSESSIVES), digits)


# --- descriptions: "my red shoes are very expensive" -----------------------

def render_description(determiner: Determiner, colour: Optional[Adjective], item: Noun,
                       plural: bool, very: bool, property_: Adjective) -> Pair:
    subject_en, subject_de = noun_phrase(determiner, [colour] if colour else [], item,
                                         plural, "nom")
    degree_en, degree_de = ("very", "sehr") if very else ("", "")
    return (_join(subject_en, "are" if plural else "is", degree_en, property_.en),
            german_sentence(subject_de, "sind" if plural else "ist", degree_de,
                            property_.de))


def sample_description(rng: random.Random) -> Pair:
    colour = rng.choice(COLOURS) if _maybe(rng) else None
    # A described colour would clash with an attributive one.
    property_ = rng.choice(QUALITIES if colour else COLOURS + QUALITIES)
    very = property_ in QUALITIES and _maybe(rng, 0.3)
    return render_description(rng.choice((THE,) + POSSESSIVES), colour, rng.choice(ITEMS),
                              _maybe(rng), very, property_)


# --- looking for: "she is looking for a cheap red jacket" ------------------

def render_looking_for(subject: Subject, count: Optional[int],
                       adjectives: Sequence[Adjective], item: Noun) -> Pair:
    """count None is a bare plural ('red shoes'); 1 is 'a'; more is a number."""
    if count is None:
        object_en, object_de = noun_phrase(None, adjectives, item, True, "acc")
    elif count == 1:
        object_en, object_de = noun_phrase(A, adjectives, item, False, "acc")
    else:
        object_en, object_de = counted_noun_phrase(count, item, "acc", adjectives)
    return (_join(subject.en, ENGLISH_BE[subject.person], "looking for", object_en),
            german_sentence(subject.de, GERMAN_SUCHEN[subject.person], object_de))


def sample_looking_for(rng: random.Random) -> Pair:
    count = rng.choice((1, 1, None, rng.randint(2, 10)))
    adjectives = []
    if _maybe(rng, 0.6):
        adjectives.append(rng.choice(QUALITIES))
    if _maybe(rng, 0.6):
        adjectives.append(rng.choice(COLOURS))
    return render_looking_for(rng.choice(PRONOUNS), count, adjectives, rng.choice(ITEMS))


# --------------------------------------------------------------------------
# Template registry and corpus generation
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    name: str
    sample: Callable[[random.Random], Pair]


TEMPLATES = (
    Template("shopping", sample_shopping),
    Template("groceries", sample_groceries),
    Template("price_statement", sample_price_statement),
    Template("price_question", sample_price_question),
    Template("vehicle_schedule", sample_vehicle_schedule),
    Template("vehicle_question", sample_vehicle_question),
    Template("event", sample_event),
    Template("opening_hours", sample_opening_hours),
    Template("clock_time", sample_clock),
    Template("routine", sample_routine),
    Template("birthday", sample_birthday),
    Template("born", sample_born),
    Template("age", sample_age),
    Template("family", sample_family),
    Template("weather", sample_weather),
    Template("temperature", sample_temperature),
    Template("arithmetic", sample_arithmetic),
    Template("duration", sample_duration),
    Template("floor", sample_floor),
    Template("phone_number", sample_phone_number),
    Template("description", sample_description),
    Template("looking_for", sample_looking_for),
)


def english_words(sentence: str) -> list[str]:
    return sentence.split(" ")


def german_words(sentence: str) -> list[str]:
    """German tokens: split on spaces, punctuation stripped."""
    words = (word.strip(_GERMAN_PUNCTUATION) for word in sentence.split(" "))
    return [word for word in words if word]


def vocabulary(pairs: Sequence[Pair]) -> tuple[set[str], set[str]]:
    """English and German word sets of a list of pairs."""
    english, german = set(), set()
    for en, de in pairs:
        english.update(english_words(en))
        german.update(german_words(de))
    return english, german


def _check_pair(template: str, en: str, de: str) -> None:
    """Guards the English/German format; a failure is a bug in a template."""
    words = len(english_words(en))
    if not _ENGLISH_SENTENCE.fullmatch(en) or not MIN_ENGLISH_WORDS <= words <= MAX_ENGLISH_WORDS:
        raise RuntimeError(f"template {template} produced bad English {en!r}")
    if not de[0].isupper() or de[-1] not in ".?" or "  " in de or de != de.strip():
        raise RuntimeError(f"template {template} produced bad German {de!r}")


def _sample_unique(rng: random.Random, total: int) -> list[LabelledPair]:
    """Collects `total` distinct English sentences, always drawing from a
    template that has collected the fewest so far (ties broken at random), so
    that every template is equally represented until it runs out of new
    sentences."""
    translation: dict[str, str] = {}
    collected: list[LabelledPair] = []
    active = list(TEMPLATES)
    collected_per_template = {template.name: 0 for template in TEMPLATES}
    duplicates_in_a_row = {template.name: 0 for template in TEMPLATES}
    while len(collected) < total:
        if not active:
            raise ValueError(
                f"the grammar cannot produce {total} distinct sentences "
                f"(it ran dry after {len(collected)})")
        fewest = min(collected_per_template[t.name] for t in active)
        template = rng.choice([t for t in active if collected_per_template[t.name] == fewest])
        en, de = template.sample(rng)
        if en in translation:
            if translation[en] != de:
                raise RuntimeError(f"{en!r} has two translations: "
                                   f"{translation[en]!r} and {de!r}")
            duplicates_in_a_row[template.name] += 1
            if duplicates_in_a_row[template.name] >= MAX_CONSECUTIVE_DUPLICATES:
                active.remove(template)
            continue
        duplicates_in_a_row[template.name] = 0
        _check_pair(template.name, en, de)
        translation[en] = de
        collected.append((template.name, (en, de)))
        collected_per_template[template.name] += 1
    return collected


def _proportional_quotas(counts: dict[str, int], n_test: int) -> dict[str, int]:
    """Largest-remainder split of n_test over templates by their counts."""
    total = sum(counts.values())
    if total == 0:
        return {name: 0 for name in counts}
    exact = {name: n_test * count / total for name, count in counts.items()}
    quotas = {name: int(share) for name, share in exact.items()}
    by_remainder = sorted(counts, key=lambda name: (quotas[name] - exact[name], name))
    for name in by_remainder[:n_test - sum(quotas.values())]:
        quotas[name] += 1
    return quotas


def _pair_tokens(pair: Pair) -> Counter:
    en, de = pair
    return Counter([("en", w) for w in english_words(en)] + [("de", w) for w in german_words(de)])


def _choose_held_out(rng: random.Random, pool: list[LabelledPair], n_test: int) -> list[int]:
    """Indices of held-out sentences: per-template quotas, and only sentences
    whose template and every word remain in the training part."""
    token_counts: Counter = Counter()
    for _, pair in pool:
        token_counts.update(_pair_tokens(pair))
    template_counts = Counter(name for name, _ in pool)
    by_template: dict[str, list[int]] = {t.name: [] for t in TEMPLATES}
    for index, (name, _) in enumerate(pool):
        by_template[name].append(index)
    quotas = _proportional_quotas({t.name: template_counts[t.name] for t in TEMPLATES}, n_test)

    chosen: list[int] = []
    taken: set[int] = set()

    def try_hold_out(index: int) -> bool:
        name, pair = pool[index]
        tokens = _pair_tokens(pair)
        if template_counts[name] < 2 or any(token_counts[t] <= n for t, n in tokens.items()):
            return False
        token_counts.subtract(tokens)
        template_counts[name] -= 1
        chosen.append(index)
        taken.add(index)
        return True

    for template in TEMPLATES:
        candidates = by_template[template.name][:]
        rng.shuffle(candidates)
        wanted = quotas[template.name]
        for index in candidates:
            if wanted == 0:
                break
            if try_hold_out(index):
                wanted -= 1
    if len(chosen) < n_test:  # some template lacked held-out-able sentences
        for index in range(len(pool)):
            if len(chosen) == n_test:
                break
            if index not in taken:
                try_hold_out(index)
    if len(chosen) < n_test:
        raise ValueError(f"cannot hold out {n_test} sentences whose words all stay in "
                         f"training; only {len(chosen)} qualify")
    return chosen


def generate_labelled_corpus(seed: int, n_train: int, n_test: int
                             ) -> tuple[list[LabelledPair], list[LabelledPair]]:
    """Like generate_corpus, with each pair labelled by its template name."""
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must not be negative")
    if n_test > 0 and n_train == 0:
        raise ValueError("a test set needs a training set that covers its words")
    if n_train + n_test > MAX_CORPUS_SIZE:
        raise ValueError(f"the grammar produces at most {MAX_CORPUS_SIZE} distinct "
                         f"sentences per corpus; asked for {n_train + n_test}")
    rng = random.Random(seed)
    pool = _sample_unique(rng, n_train + n_test)
    held_out = set(_choose_held_out(rng, pool, n_test))
    train = [item for index, item in enumerate(pool) if index not in held_out]
    test = [item for index, item in enumerate(pool) if index in held_out]
    rng.shuffle(test)
    return train, test


def generate_corpus(seed: int, n_train: int, n_test: int) -> tuple[list[Pair], list[Pair]]:
    """n_train training and n_test held-out (english, german) pairs; see the
    module docstring for the guarantees."""
    train, test = generate_labelled_corpus(seed, n_train, n_test)
    return [pair for _, pair in train], [pair for _, pair in test]


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def _write_tsv(path: str, pairs: Sequence[Pair]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for en, de in pairs:
            out.write(f"{en}\t{de}\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train", type=int, default=12000, help="training pairs")
    parser.add_argument("--test", type=int, default=300, help="held-out pairs")
    parser.add_argument("--out", required=True, help="directory for train.tsv and test.tsv")
    args = parser.parse_args(argv)

    train, test = generate_labelled_corpus(args.seed, args.train, args.test)
    os.makedirs(args.out, exist_ok=True)
    _write_tsv(os.path.join(args.out, "train.tsv"), [pair for _, pair in train])
    _write_tsv(os.path.join(args.out, "test.tsv"), [pair for _, pair in test])

    english, german = vocabulary([pair for _, pair in train + test])
    lengths = Counter(len(english_words(en)) for _, (en, _) in train + test)
    print(f"train pairs: {len(train)}  test pairs: {len(test)}")
    print(f"vocabulary: english {len(english)} words, german {len(german)} words")
    print("english words per sentence: "
          + " ".join(f"{n}:{lengths[n]}" for n in sorted(lengths)))
    train_counts = Counter(name for name, _ in train)
    test_counts = Counter(name for name, _ in test)
    for template in TEMPLATES:
        print(f"  {template.name:18s} train {train_counts[template.name]:6d}"
              f"  test {test_counts[template.name]:4d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
