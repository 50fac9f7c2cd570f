"""The Yjs author of the mixed authors sweep writes updates that pycrdt (the server's engine)
applies where a Yjs client would put them."""

from __future__ import annotations

import time

from pycrdt import Doc, Text

from bench.scenarios.authors import each_token_once
from bench.yauthors import YAuthor, place


class _Sock:
    def __init__(self):
        self.sent: list[bytes] = []
        self.is_open = True

    def send_binary(self, data: bytes) -> None:
        self.sent.append(data)


def _server_doc(content: str) -> Doc:
    doc = Doc()
    doc.get("title", type=Text).insert(0, "a title")
    doc.get("content", type=Text).insert(0, content)
    return doc


def _author(aid: int, doc: Doc) -> YAuthor:
    author = YAuthor(aid, aid * 7919 + 1, "/yjs/x")
    author.ws = _Sock()
    author.origin, author.right, _ = place(doc.get_update(), author.client, author.rng)
    return author


def _apply(doc: Doc, author: YAuthor) -> None:
    for frame in author.ws.sent:
        assert frame[:2] == b"\x00\x02"
        from notes.collab.lib0 import Reader

        doc.apply_update(Reader(frame, 2).bytes())
    author.ws.sent.clear()


def test_typing_into_an_empty_note_with_others_typing_meanwhile():
    server = _server_doc("")
    authors = [_author(aid, server) for aid in (1, 3, 5)]
    text = server.get("content", type=Text)
    typed = {1: 0, 3: 0, 5: 0, 2: 0}
    for round_ in range(20):
        for a in authors:
            a.keystroke()
            typed[a.aid] += 1
        # a "JSON" author inserting whole tokens at random places of the server's text
        pos = (round_ * 37) % (len(str(text)) + 1)
        text.insert(pos, f"[2.{round_}.{time.time_ns()}]")
        typed[2] += 1
        for a in authors[round_ % 3:]:
            _apply(server, a)
    for a in authors:
        _apply(server, a)
    value = str(text)
    assert each_token_once(value, typed)
    # each Yjs author's tokens stay together, in order (it types at one spot)
    for a in authors:
        at = [value.index(f"[{a.aid}.{s}.") for s in range(20)]
        assert at == sorted(at)


def test_typing_at_a_random_place_of_a_text():
    server = _server_doc("hello world, some text")
    a = _author(7, server)
    for _ in range(5):
        a.keystroke()
    _apply(server, a)
    value = str(server.get("content", type=Text))
    first = value.index("[7.0.")
    rest = value[first:]
    for s in range(5):  # the five tokens adjacent, in order
        assert rest.startswith(f"[7.{s}.")
        rest = rest[rest.index("]") + 1:]
    assert value[:first] + rest == "hello world, some text"


def test_step1_answer_holds_every_item():
    server = _server_doc("")
    a = _author(9, server)
    for _ in range(3):
        a.keystroke()
    a.ws.sent.clear()
    a.synced = type("F", (), {"done": lambda self: True})()
    a.on_message(b"\x00\x00\x01\x00", 0)  # server step 1, empty state vector
    frame = a.ws.sent[0]
    assert frame[:2] == b"\x00\x01"
    from notes.collab.lib0 import Reader

    fresh = _server_doc("")
    fresh.apply_update(Reader(frame, 2).bytes())
    assert str(fresh.get("content", type=Text)).count("[9.") == 3
