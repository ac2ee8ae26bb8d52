"""The binary frames exchanged with a worker. No pickle, nothing executable.

Every frame is ``u32 length`` + body. The trusted side sends one request per
candidate (source and input grids only: expected outputs never leave the trusted
process) and reads one result frame per pair, then an end frame. Results are
parsed strictly here; a frame that breaks any rule is a protocol violation and
the worker that sent it is replaced.

Each request carries a random nonce that results must repeat. The program
itself never sees it: the worker's zygote hands the request to a fresh child
with the nonce zeroed and re-encodes the child's frames under the real one
(see ``sandbox.worker``), so nothing a program writes can pass for another
request's results.

Texts (error types and messages) are cleaned when parsed: control characters
and terminal escapes are shown as ``\\xNN`` so that no program output can
drive a terminal (set its title, clear the screen) or a log viewer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

REQ_MAGIC = b"ARQ1"
# A REPL cell request (sandbox.cells): the "source" is a JSON payload of cells
# and grids, run by the child's cell runner; its head also carries its own
# CPU-time limit, which replaces the worker's pair and program limits.
CELL_MAGIC = b"ARQC"
RES_MAGIC = b"ARS1"
MAX_SIDE = 30
MAX_TEXT = 400
# Largest valid result frame: header + 30x30 cells, or header + two texts.
MAX_RESULT_FRAME = 4096

KIND_GRID = 0
KIND_ERROR = 1
KIND_INVALID = 2
KIND_END = 3
# Captured output of a REPL cell, sent before the cell's own result frame
# (accepted for cell requests only; a program that writes one breaks the protocol).
KIND_TEXT = 4
# Bytes of text per KIND_TEXT frame, well under MAX_RESULT_FRAME.
TEXT_CHUNK = 3000

_LEN = struct.Struct("<I")
_REQ_HEAD = struct.Struct("<4sQdHI")  # magic, nonce, flush interval, npairs, source bytes
_CELL_LIMIT = struct.Struct("<d")  # after the head of a cell request: its CPU-time limit in seconds
_RES_HEAD = struct.Struct("<4sQHBd")  # magic, nonce, pair index, kind, runtime


class ProtocolError(Exception):
    """A worker sent bytes that are not a valid result frame."""


# ---- requests (trusted side writes, worker reads) ----


def encode_request(nonce: int, source: str, inputs: list[tuple[int, int, bytes]], flush_s: float,
                   cell_limit_s: float | None = None) -> bytes:
    """``inputs`` are (height, width, uint8 cell bytes) triples.

    The worker holds results back and sends them in one write, except that it
    sends what it has whenever ``flush_s`` passed since its last write, so the
    trusted side sees progress on slow programs. ``cell_limit_s`` makes it a
    REPL cell request with that CPU-time limit (``source`` is then the cell
    payload of ``sandbox.cells``).
    """
    src = source.encode("utf-8", "surrogatepass")
    magic = REQ_MAGIC if cell_limit_s is None else CELL_MAGIC
    parts = [_REQ_HEAD.pack(magic, nonce, flush_s, len(inputs), len(src))]
    if cell_limit_s is not None:
        parts.append(_CELL_LIMIT.pack(cell_limit_s))
    parts.append(src)
    for h, w, cells in inputs:
        parts.append(bytes((h, w)))
        parts.append(cells)
    body = b"".join(parts)
    return _LEN.pack(len(body)) + body


def _source_start(magic: bytes) -> int:
    if magic == REQ_MAGIC:
        return _REQ_HEAD.size
    if magic == CELL_MAGIC:
        return _REQ_HEAD.size + _CELL_LIMIT.size
    raise ProtocolError("bad request magic")


def cell_limit(body: bytes | bytearray) -> float | None:
    """The CPU-time limit of a cell request; None for a program request."""
    magic = bytes(body[:4])
    _source_start(magic)
    return _CELL_LIMIT.unpack_from(body, _REQ_HEAD.size)[0] if magic == CELL_MAGIC else None


def request_layout(body: bytes | bytearray) -> tuple[int, float, int, list[tuple[int, int]]]:
    """(nonce, flush interval, end of the source, [(start, end) of each input's bytes]) of a request body.

    Used by the worker's zygote, which hands the source and then the inputs to
    a child one by one, and never decodes the program text itself.
    """
    magic, nonce, flush_s, npairs, srclen = _REQ_HEAD.unpack_from(body, 0)
    pos = _source_start(magic) + srclen
    src_end = pos
    spans = []
    for _ in range(npairs):
        h, w = body[pos], body[pos + 1]
        spans.append((pos, pos + 2 + h * w))
        pos += 2 + h * w
    if pos != len(body):
        raise ProtocolError("request size does not match its pairs")
    return nonce, flush_s, src_end, spans


def set_request_nonce(body: bytearray, nonce: int) -> None:
    """Overwrite a request body's nonce in place."""
    struct.pack_into("<Q", body, 4, nonce)


def decode_program(body: bytes) -> tuple[float, int, str]:
    """(flush interval, pair count, source) from the head of a request body, without its inputs."""
    magic, _nonce, flush_s, npairs, srclen = _REQ_HEAD.unpack_from(body, 0)
    pos = _source_start(magic)
    return flush_s, npairs, body[pos : pos + srclen].decode("utf-8", "surrogatepass")


def is_cell_request(body: bytes | bytearray) -> bool:
    return bytes(body[:4]) == CELL_MAGIC


def decode_request(body: bytes) -> tuple[int, float, str, list[tuple[int, int, bytes]]]:
    magic, nonce, flush_s, npairs, srclen = _REQ_HEAD.unpack_from(body, 0)
    pos = _source_start(magic)
    source = body[pos : pos + srclen].decode("utf-8", "surrogatepass")
    pos += srclen
    inputs = []
    for _ in range(npairs):
        h, w = body[pos], body[pos + 1]
        pos += 2
        inputs.append((h, w, body[pos : pos + h * w]))
        pos += h * w
    return nonce, flush_s, source, inputs


# ---- results (worker writes, trusted side reads) ----


def _text(s: str) -> bytes:
    b = s[:MAX_TEXT].encode("utf-8", "replace")[:MAX_TEXT]
    return struct.pack("<H", len(b)) + b


def encode_grid(nonce: int, index: int, runtime: float, h: int, w: int, cells: bytes) -> bytes:
    body = _RES_HEAD.pack(RES_MAGIC, nonce, index, KIND_GRID, runtime) + bytes((h, w)) + cells
    return _LEN.pack(len(body)) + body


def encode_failure(nonce: int, index: int, runtime: float, kind: int, error_type: str, message: str) -> bytes:
    body = _RES_HEAD.pack(RES_MAGIC, nonce, index, kind, runtime) + _text(error_type) + _text(message)
    return _LEN.pack(len(body)) + body


def encode_text(nonce: int, index: int, text: str) -> bytes:
    """One chunk of a cell's captured output (at most TEXT_CHUNK bytes of UTF-8)."""
    b = text.encode("utf-8", "replace")[:TEXT_CHUNK]
    body = _RES_HEAD.pack(RES_MAGIC, nonce, index, KIND_TEXT, 0.0) + struct.pack("<H", len(b)) + b
    return _LEN.pack(len(body)) + body


def text_frames(nonce: int, index: int, text: str) -> list[bytes]:
    """``text`` cut into KIND_TEXT frames, at character boundaries."""
    # At most 4 bytes of UTF-8 per character: a slice of TEXT_CHUNK // 4 always fits.
    step = TEXT_CHUNK // 4
    return [encode_text(nonce, index, text[i : i + step]) for i in range(0, len(text), step)]


def encode_end(nonce: int, index: int, tainted: str) -> bytes:
    body = _RES_HEAD.pack(RES_MAGIC, nonce, index, KIND_END, 0.0) + _text(tainted)
    return _LEN.pack(len(body)) + body


@dataclass
class Result:
    """One parsed result frame. ``cells`` is set for KIND_GRID, the texts otherwise."""

    index: int
    kind: int
    runtime: float
    shape: tuple[int, int] | None = None
    cells: bytes | None = None
    error_type: str = ""
    message: str = ""


def split_frame(buf: bytearray) -> bytes | None:
    """Remove and return the first complete frame body from ``buf``, if any."""
    if len(buf) < 4:
        return None
    (n,) = _LEN.unpack_from(buf, 0)
    if n > MAX_RESULT_FRAME or n < _RES_HEAD.size:
        raise ProtocolError(f"result frame of {n} bytes")
    if len(buf) < 4 + n:
        return None
    body = bytes(buf[4 : 4 + n])
    del buf[: 4 + n]
    return body


# C0 controls but newline and tab, DEL, C1 controls (ESC's 8-bit twins), and
# the bidirectional overrides that reorder what a terminal shows.
_UNSAFE = [c for c in range(0x20) if c not in (0x09, 0x0A)] + list(range(0x7F, 0xA0)) + [
    0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)
]
_ESCAPES = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNSAFE}


def clean_text(s: str) -> str:
    """``s`` with control characters and terminal escapes written out as ``\\xNN``."""
    return s.translate(_ESCAPES)


def _read_text(body: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(body):
        raise ProtocolError("truncated text")
    (n,) = struct.unpack_from("<H", body, pos)
    if n > MAX_TEXT or pos + 2 + n > len(body):
        raise ProtocolError("text field too long")
    return clean_text(body[pos + 2 : pos + 2 + n].decode("utf-8", "replace")), pos + 2 + n


def parse_result(body: bytes, nonce: int) -> Result:
    """Strictly parse one result body for the request with ``nonce``."""
    magic, got_nonce, index, kind, runtime = _RES_HEAD.unpack_from(body, 0)
    if magic != RES_MAGIC:
        raise ProtocolError("bad result magic")
    if got_nonce != nonce:
        raise ProtocolError("result for another request")
    if not (runtime == runtime and 0.0 <= runtime < 1e6):  # NaN or absurd
        runtime = 0.0
    pos = _RES_HEAD.size
    if kind == KIND_GRID:
        if len(body) < pos + 2:
            raise ProtocolError("truncated grid")
        h, w = body[pos], body[pos + 1]
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise ProtocolError(f"grid shape {h}x{w}")
        cells = body[pos + 2 :]
        if len(cells) != h * w:
            raise ProtocolError("grid size does not match its shape")
        if cells and max(cells) > 9:
            raise ProtocolError("cell value above 9")
        return Result(index, kind, runtime, (h, w), cells)
    if kind in (KIND_ERROR, KIND_INVALID):
        etype, pos = _read_text(body, pos)
        msg, pos = _read_text(body, pos)
        if pos != len(body):
            raise ProtocolError("trailing bytes")
        return Result(index, kind, runtime, error_type=etype, message=msg)
    if kind == KIND_TEXT:
        if pos + 2 > len(body):
            raise ProtocolError("truncated text")
        (n,) = struct.unpack_from("<H", body, pos)
        if n > TEXT_CHUNK or pos + 2 + n != len(body):
            raise ProtocolError("bad text frame")
        return Result(index, kind, runtime, message=clean_text(body[pos + 2 :].decode("utf-8", "replace")))
    if kind == KIND_END:
        taint, pos = _read_text(body, pos)
        if pos != len(body):
            raise ProtocolError("trailing bytes")
        return Result(index, kind, runtime, message=taint)
    raise ProtocolError(f"unknown result kind {kind}")
