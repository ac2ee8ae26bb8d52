"""The result frames are parsed strictly: anything malformed is a protocol error, never a grid."""

from __future__ import annotations

import struct

import pytest

from sandbox import protocol as P

NONCE = 0x1234_5678_9ABC_DEF0


def body(frame: bytes) -> bytes:
    buf = bytearray(frame)
    out = P.split_frame(buf)
    assert out is not None and not buf
    return out


def test_round_trip_of_each_kind():
    g = P.parse_result(body(P.encode_grid(NONCE, 2, 0.5, 2, 3, bytes([0, 1, 2, 3, 4, 9]))), NONCE)
    assert (g.index, g.kind, g.shape, g.cells, g.runtime) == (2, P.KIND_GRID, (2, 3), bytes([0, 1, 2, 3, 4, 9]), 0.5)
    e = P.parse_result(body(P.encode_failure(NONCE, 0, 0.1, P.KIND_ERROR, "IndexError", "x" * 1000)), NONCE)
    assert e.error_type == "IndexError" and len(e.message) == P.MAX_TEXT
    end = P.parse_result(body(P.encode_end(NONCE, 3, "")), NONCE)
    assert end.kind == P.KIND_END and end.message == ""


def test_request_round_trip():
    req = P.encode_request(NONCE, "def transform(g):\n    return g\n", [(1, 2, b"\x01\x02"), (2, 1, b"\x03\x04")], 0.05)
    nonce, flush, source, inputs = P.decode_request(req[4:])
    assert (nonce, flush, inputs) == (NONCE, 0.05, [(1, 2, b"\x01\x02"), (2, 1, b"\x03\x04")])
    assert source.startswith("def transform")


def _grid_body(h: int, w: int, cells: bytes, nonce: int = NONCE) -> bytes:
    return struct.pack("<4sQHBd", b"ARS1", nonce, 0, P.KIND_GRID, 0.0) + bytes((h, w)) + cells


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (_grid_body(31, 1, bytes(31)), "shape"),
        (_grid_body(0, 1, b""), "shape"),
        (_grid_body(1, 2, bytes([1, 10])), "above 9"),
        (_grid_body(2, 2, bytes(3)), "does not match"),
        (_grid_body(1, 1, b"\x00", nonce=NONCE + 1), "another request"),
        (b"XXXX" + _grid_body(1, 1, b"\x00")[4:], "magic"),
        (struct.pack("<4sQHBd", b"ARS1", NONCE, 0, 7, 0.0), "unknown result kind"),
        (struct.pack("<4sQHBd", b"ARS1", NONCE, 0, P.KIND_ERROR, 0.0) + b"\x05\x00ab", "truncated|too long"),
        (P.encode_end(NONCE, 0, "")[4:] + b"junk", "trailing"),
    ],
)
def test_malformed_results_are_rejected(raw, why):
    with pytest.raises(P.ProtocolError, match=why):
        P.parse_result(raw, NONCE)


def test_oversized_or_tiny_frames_are_rejected_before_reading_them():
    for n in (P.MAX_RESULT_FRAME + 1, 1 << 31, 3):
        with pytest.raises(P.ProtocolError):
            P.split_frame(bytearray(struct.pack("<I", n)))


def test_partial_frames_wait_for_more_bytes():
    frame = P.encode_end(NONCE, 0, "")
    buf = bytearray(frame[:-1])
    assert P.split_frame(buf) is None and len(buf) == len(frame) - 1
    buf += frame[-1:]
    assert P.split_frame(buf) == frame[4:]
