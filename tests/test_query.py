"""The query syntax: operators, weights, quotes, picture terms, and the errors."""

from __future__ import annotations

import pytest

from photofind.query import IMAGE, PHOTO, TEXT, Query, QueryError, Term, parse_query


def terms(text):
    return [(t.kind, t.value, t.weight) for t in parse_query(text).terms]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red circle", [(TEXT, "a red circle", 1.0)]),
        ("  a   red\tcircle ", [(TEXT, "a red circle", 1.0)]),
        (
            "beach + sunset - people",
            [(TEXT, "beach", 1.0), (TEXT, "sunset", 1.0), (TEXT, "people", -1.0)],
        ),
        ("beach \u2212 people", [(TEXT, "beach", 1.0), (TEXT, "people", -1.0)]),
        ("- people + beach", [(TEXT, "people", -1.0), (TEXT, "beach", 1.0)]),
        ("2*beach + 0.5 * sunset", [(TEXT, "beach", 2.0), (TEXT, "sunset", 0.5)]),
        ("beach - .25*people", [(TEXT, "beach", 1.0), (TEXT, "people", -0.25)]),
        # Hyphens and pluses inside words are words, not operators.
        ("t-shirt", [(TEXT, "t-shirt", 1.0)]),
        ("black-and-white photo", [(TEXT, "black-and-white photo", 1.0)]),
        ("beach+sunset", [(TEXT, "beach+sunset", 1.0)]),
        ("2 dogs", [(TEXT, "2 dogs", 1.0)]),
        ('"rock - paper + scissors"', [(TEXT, "rock - paper + scissors", 1.0)]),
        ('"a" + "b"', [(TEXT, "a", 1.0), (TEXT, "b", 1.0)]),
        (
            "img:/photos/cat.jpg + in winter",
            [(IMAGE, "/photos/cat.jpg", 1.0), (TEXT, "in winter", 1.0)],
        ),
        ('IMAGE:"/my photos/a - b.jpg"', [(IMAGE, "/my photos/a - b.jpg", 1.0)]),
        (
            "photo:12 - 0.5*blue background",
            [(PHOTO, 12, 1.0), (TEXT, "blue background", -0.5)],
        ),
    ],
)
def test_parses(text, expected):
    assert terms(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("beach +", "ends with an operator"),
        ("beach + + sun", "column 9 follows another operator"),
        ("- people", "only subtracts"),
        ('"open quote', "never closed"),
        ("0*beach", "weight 0"),
        ("2*", "no term after it"),
        ("photo:abc", "photo id"),
        ("img:", "needs a picture's path"),
    ],
)
def test_errors_say_what_is_wrong(text, message):
    with pytest.raises(QueryError, match=message):
        parse_query(text)


@pytest.mark.parametrize(
    "text",
    [
        "beach + sunset - people",
        "2*beach - 0.5*people",
        '"rock - paper"',
        'img:"/my photos/x.jpg" + in winter',
        "photo:3 - blue",
        "- people + beach",
    ],
)
def test_str_round_trips(text):
    q = parse_query(text)
    assert parse_query(str(q)) == q


def test_building_queries_in_code():
    q = Query.text("beach") + 2 * Query.text("sunset") - Query.photo(4) * 0.5
    assert q.terms == (
        Term(TEXT, "beach", 1.0),
        Term(TEXT, "sunset", 2.0),
        Term(PHOTO, 4, -0.5),
    )
    assert str(q) == "beach + 2*sunset - 0.5*photo:4"


def test_plain_text_means_one_positive_sentence():
    assert parse_query("a cat").is_plain_text
    assert parse_query("2*a cat").is_plain_text
    assert not parse_query("a cat - a dog").is_plain_text
    assert not parse_query("img:x.jpg").is_plain_text


# -- person: ------------------------------------------------------------------------------


def test_person_parts_are_filters_taken_out_of_the_terms():
    q = parse_query('person:Anna beach + 0.5*sunset person:"Anna Smith"')
    assert q.people == ("Anna", "Anna Smith")
    assert [(t.kind, t.value, t.weight) for t in q.terms] == [
        ("text", "beach", 1.0),
        ("text", "sunset", 0.5),
    ]
    assert parse_query(str(q)) == q  # printed as it parses
    only = parse_query("person:Anna")
    assert only.terms == () and only.people == ("Anna",)
    assert parse_query("PERSON:Anna person:Anna").people == ("Anna",)


def test_person_inside_quotes_or_a_word_is_text():
    assert parse_query('"rock person:x"').people == ()
    assert parse_query("beach+person:x").people == ()
    assert Query.person("Anna") + Query.text("beach") == parse_query("person:Anna beach")


@pytest.mark.parametrize(
    "text, words",
    [
        ("person:", "needs a name"),
        ('person:"  "', "needs a name"),
        ("beach + person:Anna", "person: is a filter"),
        ("person:Anna - beach", "only subtracts"),
        ('person:"Anna', "never closed"),
    ],
)
def test_bad_person_parts_say_why(text, words):
    with pytest.raises(QueryError, match=words):
        parse_query(text)


def test_a_person_cannot_be_subtracted():
    with pytest.raises(QueryError, match="cannot be subtracted"):
        Query.text("beach") - Query.person("Anna")
