"""Cutting text into the pieces the offline engine speaks one at a time."""

from __future__ import annotations

from avatar_worker.tts.sentences import MAX_PIECE_CHARS, split_sentences


def test_sentences_end_at_punctuation_followed_by_space() -> None:
    text = 'Hello there. Pi is 3.14, see example.com! "Quoted." Next?  Last'
    assert split_sentences(text) == [
        "Hello there.",
        "Pi is 3.14, see example.com!",
        '"Quoted."',
        "Next?",
        "Last",
    ]


def test_line_breaks_and_cjk_full_stops_end_sentences() -> None:
    text = "one\ntwo\n\n\u4e09\u3002\u56db\uff01\u4e94"  # three sentences in Chinese
    assert split_sentences(text) == ["one", "two", "\u4e09\u3002", "\u56db\uff01", "\u4e94"]


def test_nothing_to_say_is_no_pieces() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\t ") == []


def test_a_long_sentence_is_cut_at_clauses_then_words() -> None:
    clauses = ", ".join(["the quick brown fox"] * 30)
    pieces = split_sentences(clauses)
    assert len(pieces) > 1
    assert all(len(piece) <= MAX_PIECE_CHARS for piece in pieces)
    assert all(piece.endswith(",") for piece in pieces[:-1])
    assert " ".join(pieces) == clauses

    words = " ".join(["word"] * 100)
    cut = split_sentences(words, max_chars=42)
    assert all(len(piece) <= 42 for piece in cut)
    assert " ".join(cut) == words


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]
