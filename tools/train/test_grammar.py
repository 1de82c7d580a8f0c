"""Tests for tools/train/grammar.py.

Run from the repo root:  python3 -m unittest tools/train/test_grammar.py
"""

import os
import re
import sys
import time
import unittest
from collections import Counter
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grammar  # noqa: E402


class NumberWordsTest(unittest.TestCase):
    GERMAN_CARDINALS = {
        0: "null", 1: "eins", 7: "sieben", 11: "elf", 16: "sechzehn", 17: "siebzehn",
        20: "zwanzig", 21: "einundzwanzig", 30: "dreißig", 31: "einunddreißig",
        45: "fünfundvierzig", 60: "sechzig", 66: "sechsundsechzig",
        77: "siebenundsiebzig", 99: "neunundneunzig", 100: "hundert",
        500: "fünfhundert",
    }
    ENGLISH_CARDINALS = {0: "zero", 13: "thirteen", 20: "twenty", 25: "twenty five",
                         40: "forty", 99: "ninety nine", 300: "three hundred"}
    GERMAN_DATIVE_ORDINALS = {
        1: "am ersten", 3: "am dritten", 7: "am siebten", 8: "am achten",
        20: "am zwanzigsten", 21: "am einundzwanzigsten", 31: "am einunddreißigsten",
    }
    ENGLISH_ORDINALS = {1: "first", 2: "second", 3: "third", 12: "twelfth",
                        20: "twentieth", 21: "twenty first", 30: "thirtieth",
                        31: "thirty first"}

    def test_german_cardinals(self):
        for number, words in self.GERMAN_CARDINALS.items():
            with self.subTest(number=number):
                self.assertEqual(grammar.german_number(number), words)

    def test_english_cardinals(self):
        for number, words in self.ENGLISH_CARDINALS.items():
            with self.subTest(number=number):
                self.assertEqual(grammar.english_number(number), words)

    def test_german_dative_ordinals(self):
        for number, words in self.GERMAN_DATIVE_ORDINALS.items():
            with self.subTest(number=number):
                self.assertEqual("am " + grammar.german_ordinal(number), words)

    def test_english_ordinals(self):
        for number, words in self.ENGLISH_ORDINALS.items():
            with self.subTest(number=number):
                self.assertEqual(grammar.english_ordinal(number), words)

    def test_years(self):
        self.assertEqual(grammar.german_year(1984), "neunzehnhundertvierundachtzig")
        self.assertEqual(grammar.english_year(1984), "nineteen eighty four")
        self.assertEqual(grammar.german_year(2000), "zweitausend")
        self.assertEqual(grammar.german_year(2001), "zweitausendeins")
        self.assertEqual(grammar.english_year(2005), "two thousand and five")
        self.assertEqual(grammar.english_year(2012), "twenty twelve")

    def test_out_of_range(self):
        with self.assertRaises(ValueError):
            grammar.german_number(1000)
        with self.assertRaises(ValueError):
            grammar.german_ordinal(0)


class PhraseTest(unittest.TestCase):
    def test_dates(self):
        may = grammar.month_named("may")
        self.assertEqual(grammar.date_phrase(3, may), ("on the third of may", "am dritten Mai"))
        march = grammar.month_named("march")
        self.assertEqual(grammar.date_phrase(31, march),
                         ("on the thirty first of march", "am einunddreißigsten März"))
        with self.assertRaises(ValueError):
            grammar.date_phrase(31, grammar.month_named("june"))

    def test_clock_times(self):
        expected = {
            ("o_clock", 1, 0): ("at one o clock", "um ein Uhr"),
            ("o_clock", 9, 0): ("at nine o clock", "um neun Uhr"),
            ("quarter_past", 1, 0): ("at quarter past one", "um Viertel nach eins"),
            ("half_past", 4, 0): ("at half past four", "um halb fünf"),
            ("half_past", 12, 0): ("at half past twelve", "um halb eins"),
            ("quarter_to", 1, 0): ("at quarter to one", "um Viertel vor eins"),
            ("minutes", 7, 15): ("at seven fifteen", "um sieben Uhr fünfzehn"),
            ("minutes", 7, 5): ("at seven oh five", "um sieben Uhr fünf"),
            ("minutes", 1, 1): ("at one oh one", "um ein Uhr eins"),
        }
        for args, pair in expected.items():
            with self.subTest(args=args):
                self.assertEqual(grammar.at_time(*args), pair)

    def test_noun_phrases(self):
        red = grammar.COLOURS[0]
        hat, shirt = grammar.ITEMS[4], grammar.ITEMS[2]
        self.assertEqual(grammar.noun_phrase(grammar.A, [red], hat, False, "acc"),
                         ("a red hat", "einen roten Hut"))
        self.assertEqual(grammar.noun_phrase(grammar.MY, [red], shirt, False, "nom"),
                         ("my red shirt", "mein rotes Hemd"))
        self.assertEqual(grammar.noun_phrase(grammar.THIS, [red], hat, True, "nom"),
                         ("these red hats", "diese roten Hüte"))
        old = grammar.QUALITIES[1]
        self.assertEqual(grammar.noun_phrase(grammar.A, [old], hat, False, "acc"),
                         ("an old hat", "einen alten Hut"))
        expensive = grammar.QUALITIES[3]
        self.assertEqual(grammar.counted_noun_phrase(2, hat, "acc", [expensive]),
                         ("two expensive hats", "zwei teure Hüte"))


class FixedSentenceTest(unittest.TestCase):
    """Whole sentences, rendered from explicit choices, checked exactly."""

    @staticmethod
    def pronoun(english):
        return next(s for s in grammar.PRONOUNS if s.en == english)

    @staticmethod
    def named(table, english):
        return next(entry for entry in table if entry.en == english)

    def test_shopping(self):
        apple = self.named(grammar.PRODUCE, "apple")
        banana = self.named(grammar.PRODUCE, "banana")
        self.assertEqual(grammar.render_shopping(self.pronoun("i"), [(3, apple)]),
                         ("i would like three apples", "Ich hätte gern drei Äpfel."))
        self.assertEqual(
            grammar.render_shopping(self.pronoun("we"), [(1, apple), (1, banana)]),
            ("we would like one apple and one banana",
             "Wir hätten gern einen Apfel und eine Banane."))

    def test_groceries(self):
        kilogram, liter = grammar.UNITS[0], grammar.UNITS[2]
        self.assertEqual(
            grammar.render_groceries(self.pronoun("we"), [(2, kilogram, "potatoes")]),
            ("we need two kilograms of potatoes", "Wir brauchen zwei Kilo Kartoffeln."))
        self.assertEqual(
            grammar.render_groceries(self.pronoun("he"), [(1, liter, "milk")]),
            ("he needs one liter of milk", "Er braucht einen Liter Milch."))

    def test_vehicle(self):
        train = grammar.VEHICLES[0]
        self.assertEqual(
            grammar.render_vehicle_schedule(train, None, None, False, None,
                                            grammar.at_time("half_past", 4)),
            ("the train leaves at half past four", "Der Zug fährt um halb fünf ab."))
        nxt = grammar.VEHICLE_ORDER[0]
        self.assertEqual(
            grammar.render_vehicle_question(train, nxt, ("vienna", "Wien"), False, None),
            ("when does the next train to vienna leave",
             "Wann fährt der nächste Zug nach Wien ab?"))

    def test_birthday_and_event(self):
        june = grammar.month_named("june")
        self.assertEqual(
            grammar.render_birthday(grammar.MY, grammar.date_phrase(12, june)),
            ("my birthday is on the twelfth of june",
             "Mein Geburtstag ist am zwölften Juni."))
        meeting = self.named(grammar.EVENTS, "meeting")
        self.assertEqual(
            grammar.render_event(grammar.THE, meeting, ("is", "ist"),
                                 [grammar.weekday_phrase(0), grammar.at_time("o_clock", 9)]),
            ("the meeting is on monday at nine o clock",
             "Die Besprechung ist am Montag um neun Uhr."))

    def test_prices(self):
        bag = self.named(grammar.ITEMS, "bag")
        red = grammar.COLOURS[0]
        self.assertEqual(grammar.render_price_question(grammar.THE, red, bag, False),
                         ("how much does the red bag cost",
                          "Wie viel kostet die rote Tasche?"))
        self.assertEqual(grammar.render_price_statement(None, 12, 50),
                         ("it costs twelve euros fifty", "Es kostet zwölf Euro fünfzig."))
        self.assertEqual(grammar.render_price_statement(None, 1, 0),
                         ("it costs one euro", "Es kostet einen Euro."))

    def test_routine_weather_age(self):
        get_up = grammar.ACTIVITIES[0]
        self.assertEqual(
            grammar.render_routine(self.pronoun("he"), get_up, ("every day", "jeden Tag"),
                                   grammar.at_time("o_clock", 7)),
            ("he gets up every day at seven o clock",
             "Er steht jeden Tag um sieben Uhr auf."))
        cold = grammar.WEATHER_ADJECTIVES[1]
        self.assertEqual(
            grammar.render_weather_adjective("tomorrow", ("berlin", "Berlin"), False, cold),
            ("it will be cold in berlin tomorrow", "Morgen wird es in Berlin kalt."))
        rain = grammar.PRECIPITATION[0]
        self.assertEqual(
            grammar.render_weather_precipitation("yesterday", None, rain),
            ("it rained yesterday", "Gestern hat es geregnet."))
        brother = self.named(grammar.RELATIVES, "brother")
        self.assertEqual(
            grammar.render_age(grammar.relative_subject(grammar.MY, brother), 25),
            ("my brother is twenty five years old",
             "Mein Bruder ist fünfundzwanzig Jahre alt."))

    def test_born_and_looking_for(self):
        may = grammar.month_named("may")
        self.assertEqual(
            grammar.render_born(self.pronoun("i"), grammar.date_phrase(3, may), 1984),
            ("i was born on the third of may nineteen eighty four",
             "Ich bin am dritten Mai neunzehnhundertvierundachtzig geboren."))
        shirt = self.named(grammar.ITEMS, "shirt")
        cheap, red = grammar.QUALITIES[2], grammar.COLOURS[0]
        self.assertEqual(
            grammar.render_looking_for(self.pronoun("she"), 1, [cheap, red], shirt),
            ("she is looking for a cheap red shirt", "Sie sucht ein billiges rotes Hemd."))


class CorpusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        started = time.perf_counter()
        cls.train, cls.test = grammar.generate_labelled_corpus(1, 12000, 300)
        cls.seconds = time.perf_counter() - started

    def pairs(self, labelled):
        return [pair for _, pair in labelled]

    def test_sizes_and_speed(self):
        self.assertEqual(len(self.train), 12000)
        self.assertEqual(len(self.test), 300)
        self.assertLess(self.seconds, 5.0)

    def test_unique_and_disjoint(self):
        english = [en for en, _ in self.pairs(self.train) + self.pairs(self.test)]
        self.assertEqual(len(english), len(set(english)))

    def test_held_out_words_and_templates_are_in_train(self):
        train_en, train_de = grammar.vocabulary(self.pairs(self.train))
        test_en, test_de = grammar.vocabulary(self.pairs(self.test))
        self.assertLessEqual(test_en, train_en)
        self.assertLessEqual(test_de, train_de)
        train_templates = {name for name, _ in self.train}
        self.assertEqual(train_templates, {t.name for t in grammar.TEMPLATES})
        self.assertLessEqual({name for name, _ in self.test}, train_templates)

    def test_test_set_spread_over_templates(self):
        per_template = Counter(name for name, _ in self.test)
        share = len(self.test) / len(grammar.TEMPLATES)
        for template in grammar.TEMPLATES:
            with self.subTest(template=template.name):
                self.assertGreaterEqual(per_template[template.name], share / 2)

    def test_english_is_tts_friendly(self):
        for en, _ in self.pairs(self.train) + self.pairs(self.test):
            self.assertRegex(en, r"^[a-z]+( [a-z]+)*$")
            self.assertTrue(3 <= len(en.split()) <= 14, en)

    def test_german_is_a_sentence(self):
        for _, de in self.pairs(self.train) + self.pairs(self.test):
            self.assertTrue(de[0].isupper(), de)
            self.assertIn(de[-1], ".?")
            self.assertNotRegex(de[:-1], r"[0-9.?!,]|  ")

    def test_vocabulary_size_is_small(self):
        english, german = grammar.vocabulary(self.pairs(self.train) + self.pairs(self.test))
        self.assertTrue(250 <= len(english) <= 400, len(english))
        self.assertLess(len(german), 1000)

    def test_generate_corpus_matches_labelled(self):
        train, test = grammar.generate_corpus(1, 12000, 300)
        self.assertEqual(train, self.pairs(self.train))
        self.assertEqual(test, self.pairs(self.test))


class DeterminismAndErrorsTest(unittest.TestCase):
    def test_same_seed_same_corpus(self):
        self.assertEqual(grammar.generate_corpus(7, 2000, 100),
                         grammar.generate_corpus(7, 2000, 100))

    def test_other_seed_other_corpus(self):
        self.assertNotEqual(grammar.generate_corpus(7, 500, 20),
                            grammar.generate_corpus(8, 500, 20))

    def test_global_random_untouched(self):
        import random
        random.seed(123)
        expected = random.random()
        random.seed(123)
        grammar.generate_corpus(1, 300, 10)
        self.assertEqual(random.random(), expected)

    def test_vocabulary_strips_punctuation(self):
        english, german = grammar.vocabulary([("it is cold", "Es ist kalt."),
                                              ("how much does it cost", "Wie viel?")])
        self.assertEqual(german, {"Es", "ist", "kalt", "Wie", "viel"})
        self.assertIn("cost", english)

    def test_bad_sizes(self):
        with self.assertRaises(ValueError):
            grammar.generate_corpus(1, -1, 0)
        with self.assertRaises(ValueError):
            grammar.generate_corpus(1, grammar.MAX_CORPUS_SIZE, 1)

    def test_grammar_running_dry(self):
        tiny = (grammar.Template("tiny", lambda rng: rng.choice(
            [("it is cold", "Es ist kalt."), ("it is warm", "Es ist warm.")])),)
        with mock.patch.object(grammar, "TEMPLATES", tiny):
            with self.assertRaisesRegex(ValueError, "cannot produce 3 distinct"):
                grammar.generate_corpus(1, 3, 0)


if __name__ == "__main__":
    unittest.main()
