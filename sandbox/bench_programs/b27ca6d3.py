"""ARC b27ca6d3: red (2) pieces of exactly two cells get a green (3) frame
around them; single red cells stay as they are."""

# ---------------------------------------------------------------------------
# gridkit: a small toolkit for ARC grids, pure Python over tuples.
#
# Grids are tuples of tuples of ints; objects are frozensets of
# (colour, (row, col)) cells; patches are frozensets of (row, col).
# Everything is immutable so that helpers compose without copying worries.
# ---------------------------------------------------------------------------

from collections import Counter, defaultdict, deque
from functools import reduce, lru_cache
from itertools import product, combinations, chain

Grid = tuple
Cell = tuple
Patch = frozenset
Obj = frozenset

ORTHO = ((-1, 0), (1, 0), (0, -1), (0, 1))
DIAG = ((-1, -1), (-1, 1), (1, -1), (1, 1))
EIGHT = ORTHO + DIAG


# ---- basic combinators -----------------------------------------------------

def identity(x):
    return x


def compose(*fns):
    """compose(f, g, h)(x) == h(g(f(x))): applied left to right."""
    def run(x):
        for f in fns:
            x = f(x)
        return x
    return run


def fork(outer, a, b):
    """fork(outer, a, b)(x) == outer(a(x), b(x))."""
    return lambda x: outer(a(x), b(x))


def lbind(fn, fixed):
    return lambda y: fn(fixed, y)


def rbind(fn, fixed):
    return lambda x: fn(x, fixed)


def matcher(fn, target):
    return lambda x: fn(x) == target


def chain_all(*preds):
    return lambda x: all(p(x) for p in preds)


def apply_all(fn, items):
    return type(items)(fn(x) for x in items) if isinstance(items, (tuple, frozenset)) else [fn(x) for x in items]


def sfilter(items, pred):
    return type(items)(x for x in items if pred(x))


def argmax(items, key):
    return max(items, key=key)


def argmin(items, key):
    return min(items, key=key)


def merge(containers):
    return type(containers)(chain.from_iterable(containers)) if containers else frozenset()


def first(items):
    return next(iter(items))


def last(items):
    return max(enumerate(items))[1]


def size(x):
    return len(x)


def both(a, b):
    return a and b


def either(a, b):
    return a or b


def flip(b):
    return not b


def increment(x):
    if isinstance(x, tuple):
        return tuple(v + 1 for v in x)
    return x + 1


def decrement(x):
    if isinstance(x, tuple):
        return tuple(v - 1 for v in x)
    return x - 1


def add(a, b):
    if isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] + b[0], a[1] + b[1])
    if isinstance(a, tuple):
        return (a[0] + b, a[1] + b)
    if isinstance(b, tuple):
        return (a + b[0], a + b[1])
    return a + b


def subtract(a, b):
    if isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] - b[0], a[1] - b[1])
    if isinstance(a, tuple):
        return (a[0] - b, a[1] - b)
    return a - b


def multiply(a, b):
    if isinstance(a, tuple) and isinstance(b, tuple):
        return (a[0] * b[0], a[1] * b[1])
    if isinstance(a, tuple):
        return (a[0] * b, a[1] * b)
    return a * b


def sign(x):
    if isinstance(x, tuple):
        return tuple(sign(v) for v in x)
    return (x > 0) - (x < 0)


def crement(x):
    """Move one step away from zero."""
    return x + sign(x) if x else 0


# ---- grids -----------------------------------------------------------------

def as_grid(rows):
    return tuple(tuple(int(v) for v in row) for row in rows)


def height(piece):
    if not piece:
        return 0
    if isinstance(piece, tuple):
        return len(piece)
    rows = [loc[0] for loc in locs(piece)]
    return max(rows) - min(rows) + 1


def width(piece):
    if not piece:
        return 0
    if isinstance(piece, tuple):
        return len(piece[0])
    cols = [loc[1] for loc in locs(piece)]
    return max(cols) - min(cols) + 1


def shape(piece):
    return (height(piece), width(piece))


def canvas(colour, dims):
    h, w = dims
    return tuple(tuple(colour for _ in range(w)) for _ in range(h))


def index(grid, loc):
    r, c = loc
    if 0 <= r < len(grid) and 0 <= c < len(grid[0]):
        return grid[r][c]
    return None


def palette(piece):
    if isinstance(piece, tuple):
        return frozenset(v for row in piece for v in row)
    return frozenset(c for c, _ in piece)


def colour_count(piece, colour):
    if isinstance(piece, tuple):
        return sum(row.count(colour) for row in piece)
    return sum(1 for c, _ in piece if c == colour)


def most_colour(piece):
    values = [v for row in piece for v in row] if isinstance(piece, tuple) else [c for c, _ in piece]
    return Counter(values).most_common(1)[0][0]


def least_colour(piece):
    values = [v for row in piece for v in row] if isinstance(piece, tuple) else [c for c, _ in piece]
    counts = Counter(values)
    return min(counts, key=lambda k: (counts[k], k))


def ofcolour(grid, colour):
    return frozenset((r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v == colour)


def asindices(grid):
    return frozenset((r, c) for r in range(len(grid)) for c in range(len(grid[0])))


def asobject(grid):
    return frozenset((v, (r, c)) for r, row in enumerate(grid) for c, v in enumerate(row))


def rot90(grid):
    return tuple(row for row in zip(*grid[::-1]))


def rot180(grid):
    return tuple(tuple(row[::-1]) for row in grid[::-1])


def rot270(grid):
    return tuple(tuple(row) for row in zip(*grid))[::-1]


def hmirror(piece):
    if isinstance(piece, tuple):
        return piece[::-1]
    d = uppermost(piece) + lowermost(piece)
    if isinstance(first(piece)[1], tuple):
        return frozenset((v, (d - r, c)) for v, (r, c) in piece)
    return frozenset((d - r, c) for r, c in piece)


def vmirror(piece):
    if isinstance(piece, tuple):
        return tuple(row[::-1] for row in piece)
    d = leftmost(piece) + rightmost(piece)
    if isinstance(first(piece)[1], tuple):
        return frozenset((v, (r, d - c)) for v, (r, c) in piece)
    return frozenset((r, d - c) for r, c in piece)


def dmirror(grid):
    return tuple(zip(*grid))


def hconcat(a, b):
    return tuple(x + y for x, y in zip(a, b))


def vconcat(a, b):
    return a + b


def crop(grid, start, dims):
    r, c = start
    h, w = dims
    return tuple(row[c:c + w] for row in grid[r:r + h])


def upscale(grid, factor):
    out = []
    for row in grid:
        wide = tuple(v for v in row for _ in range(factor))
        out.extend([wide] * factor)
    return tuple(out)


def downscale(grid, factor):
    return tuple(row[::factor] for row in grid[::factor])


def hsplit(grid, n):
    w = len(grid[0]) // n
    extra = len(grid[0]) % n != 0
    return tuple(crop(grid, (0, w * i + i * extra), (len(grid), w)) for i in range(n))


def vsplit(grid, n):
    h = len(grid) // n
    extra = len(grid) % n != 0
    return tuple(crop(grid, (h * i + i * extra, 0), (h, len(grid[0]))) for i in range(n))


def switch(grid, a, b):
    return tuple(tuple(b if v == a else a if v == b else v for v in row) for row in grid)


def replace(grid, old, new):
    return tuple(tuple(new if v == old else v for v in row) for row in grid)


def cellwise(a, b, fallback):
    return tuple(tuple(x if x == y else fallback for x, y in zip(ra, rb)) for ra, rb in zip(a, b))


def fill(grid, colour, patch):
    h, w = len(grid), len(grid[0])
    rows = [list(row) for row in grid]
    for loc in locs(patch):
        r, c = loc
        if 0 <= r < h and 0 <= c < w:
            rows[r][c] = colour
    return tuple(tuple(row) for row in rows)


def underfill(grid, colour, patch):
    bg = most_colour(grid)
    h, w = len(grid), len(grid[0])
    rows = [list(row) for row in grid]
    for r, c in locs(patch):
        if 0 <= r < h and 0 <= c < w and rows[r][c] == bg:
            rows[r][c] = colour
    return tuple(tuple(row) for row in rows)


def paint(grid, obj):
    h, w = len(grid), len(grid[0])
    rows = [list(row) for row in grid]
    for v, (r, c) in obj:
        if 0 <= r < h and 0 <= c < w:
            rows[r][c] = v
    return tuple(tuple(row) for row in rows)


def cover(grid, patch):
    return fill(grid, most_colour(grid), patch)


def subgrid(patch, grid):
    return crop(grid, ulcorner(patch), shape(patch))


def trim(grid):
    return tuple(row[1:-1] for row in grid[1:-1])


def compress(grid):
    """Drop every row and column that is a single colour."""
    keep_r = [i for i, row in enumerate(grid) if len(set(row)) > 1]
    cols = list(zip(*grid))
    keep_c = [j for j, col in enumerate(cols) if len(set(col)) > 1]
    return tuple(tuple(grid[i][j] for j in keep_c) for i in keep_r)


def dedupe_rows(grid):
    out = [grid[0]]
    for row in grid[1:]:
        if row != out[-1]:
            out.append(row)
    return tuple(out)


def dedupe(grid):
    return dmirror(dedupe_rows(dmirror(dedupe_rows(grid))))


# ---- patches and objects ---------------------------------------------------

def locs(piece):
    """The (row, col) locations of a patch or an object."""
    if not piece:
        return frozenset()
    item = first(piece)
    if isinstance(item[1], tuple):
        return frozenset(loc for _, loc in piece)
    return frozenset(piece)


def toindices(piece):
    return locs(piece)


def recolor(colour, piece):
    return frozenset((colour, loc) for loc in locs(piece))


def shift(piece, offset):
    dr, dc = offset
    if not piece:
        return piece
    if isinstance(first(piece)[1], tuple):
        return frozenset((v, (r + dr, c + dc)) for v, (r, c) in piece)
    return frozenset((r + dr, c + dc) for r, c in piece)


def normalize(piece):
    return shift(piece, (-uppermost(piece), -leftmost(piece)))


def uppermost(piece):
    return min(r for r, _ in locs(piece))


def lowermost(piece):
    return max(r for r, _ in locs(piece))


def leftmost(piece):
    return min(c for _, c in locs(piece))


def rightmost(piece):
    return max(c for _, c in locs(piece))


def ulcorner(piece):
    return (uppermost(piece), leftmost(piece))


def lrcorner(piece):
    return (lowermost(piece), rightmost(piece))


def urcorner(piece):
    return (uppermost(piece), rightmost(piece))


def llcorner(piece):
    return (lowermost(piece), leftmost(piece))


def center(piece):
    return (uppermost(piece) + height(piece) // 2, leftmost(piece) + width(piece) // 2)


def centerofmass(piece):
    ls = locs(piece)
    return (sum(r for r, _ in ls) // len(ls), sum(c for _, c in ls) // len(ls))


def backdrop(piece):
    if not piece:
        return frozenset()
    (r0, c0), (r1, c1) = ulcorner(piece), lrcorner(piece)
    return frozenset(product(range(r0, r1 + 1), range(c0, c1 + 1)))


def delta(piece):
    return backdrop(piece) - locs(piece)


def box(piece):
    """The outline of the bounding box."""
    if not piece:
        return frozenset()
    (r0, c0), (r1, c1) = ulcorner(piece), lrcorner(piece)
    out = {(r, c0) for r in range(r0, r1 + 1)} | {(r, c1) for r in range(r0, r1 + 1)}
    out |= {(r0, c) for c in range(c0, c1 + 1)} | {(r1, c) for c in range(c0, c1 + 1)}
    return frozenset(out)


def outbox(piece):
    (r0, c0), (r1, c1) = ulcorner(piece), lrcorner(piece)
    return box(frozenset({(r0 - 1, c0 - 1), (r1 + 1, c1 + 1)}))


def inbox(piece):
    (r0, c0), (r1, c1) = ulcorner(piece), lrcorner(piece)
    if r1 - r0 < 2 or c1 - c0 < 2:
        return frozenset()
    return box(frozenset({(r0 + 1, c0 + 1), (r1 - 1, c1 - 1)}))


def corners(piece):
    return frozenset({ulcorner(piece), urcorner(piece), llcorner(piece), lrcorner(piece)})


def neighbors(loc, dirs=ORTHO):
    r, c = loc
    return frozenset((r + dr, c + dc) for dr, dc in dirs)


def dneighbors(loc):
    return neighbors(loc, ORTHO)


def ineighbors(loc):
    return neighbors(loc, DIAG)


def mapply(fn, items):
    return merge(apply_all(fn, items))


def connect(a, b):
    """The straight (horizontal, vertical or diagonal) line from a to b, both included."""
    (r0, c0), (r1, c1) = a, b
    if r0 == r1:
        return frozenset((r0, c) for c in range(min(c0, c1), max(c0, c1) + 1))
    if c0 == c1:
        return frozenset((r, c0) for r in range(min(r0, r1), max(r0, r1) + 1))
    if abs(r1 - r0) == abs(c1 - c0):
        dr, dc = sign(r1 - r0), sign(c1 - c0)
        return frozenset((r0 + i * dr, c0 + i * dc) for i in range(abs(r1 - r0) + 1))
    return frozenset()


def shoot(start, direction, reach=42):
    return connect(start, (start[0] + reach * direction[0], start[1] + reach * direction[1]))


def hfrontier(loc):
    return frozenset((loc[0], c) for c in range(30))


def vfrontier(loc):
    return frozenset((r, loc[1]) for r in range(30))


def adjacent(a, b):
    la, lb = locs(a), locs(b)
    return any(n in lb for loc in la for n in dneighbors(loc))


def manhattan(a, b):
    return min(abs(r0 - r1) + abs(c0 - c1) for r0, c0 in locs(a) for r1, c1 in locs(b))


def hmatching(a, b):
    return bool({r for r, _ in locs(a)} & {r for r, _ in locs(b)})


def vmatching(a, b):
    return bool({c for _, c in locs(a)} & {c for _, c in locs(b)})


def gravitate(source, dest):
    """The offset that moves ``source`` toward ``dest`` until they are adjacent."""
    srow, scol = center(source)
    drow, dcol = center(dest)
    if vmatching(source, dest):
        step = (1 if srow < drow else -1, 0)
    else:
        step = (0, 1 if scol < dcol else -1)
    total = (0, 0)
    moved = source
    for _ in range(42):
        if adjacent(moved, dest):
            break
        moved = shift(moved, step)
        total = add(total, step)
    return total


def toobject(patch, grid):
    h, w = len(grid), len(grid[0])
    return frozenset((grid[r][c], (r, c)) for r, c in locs(patch) if 0 <= r < h and 0 <= c < w)


def objects(grid, univalued=True, diagonal=False, without_bg=True):
    """Connected components of a grid as objects."""
    bg = most_colour(grid) if without_bg else None
    h, w = len(grid), len(grid[0])
    dirs = EIGHT if diagonal else ORTHO
    seen = set()
    out = set()
    for r in range(h):
        for c in range(w):
            if (r, c) in seen or grid[r][c] == bg:
                continue
            colour = grid[r][c]
            cells = set()
            queue = deque([(r, c)])
            seen.add((r, c))
            while queue:
                y, x = queue.popleft()
                cells.add((grid[y][x], (y, x)))
                for dy, dx in dirs:
                    ny, nx = y + dy, x + dx
                    if not (0 <= ny < h and 0 <= nx < w) or (ny, nx) in seen:
                        continue
                    v = grid[ny][nx]
                    if v == bg or (univalued and v != colour):
                        continue
                    seen.add((ny, nx))
                    queue.append((ny, nx))
            out.add(frozenset(cells))
    return frozenset(out)


def partition(grid):
    """One object per colour (not necessarily connected)."""
    return frozenset(frozenset((v, (r, c)) for r, row in enumerate(grid) for c, x in enumerate(row) if x == v)
                     for v in palette(grid))


def fgpartition(grid):
    bg = most_colour(grid)
    return frozenset(o for o in partition(grid) if first(o)[0] != bg)


def colorfilter(objs, colour):
    return frozenset(o for o in objs if first(o)[0] == colour)


def sizefilter(objs, n):
    return frozenset(o for o in objs if len(o) == n)


def colour_of(obj):
    return first(obj)[0]


def occurrences(grid, obj):
    norm = normalize(obj)
    h, w = len(grid), len(grid[0])
    oh, ow = shape(norm)
    found = set()
    for r in range(h - oh + 1):
        for c in range(w - ow + 1):
            if all(grid[r + y][c + x] == v for v, (y, x) in norm):
                found.add((r, c))
    return frozenset(found)


def frontiers(grid):
    """Full rows and columns of a single colour, as objects."""
    h, w = len(grid), len(grid[0])
    rows = [frozenset((grid[r][0], (r, c)) for c in range(w)) for r in range(h) if len(set(grid[r])) == 1]
    cols_t = dmirror(grid)
    cols = [frozenset((cols_t[c][0], (r, c)) for r in range(h)) for c in range(w) if len(set(cols_t[c])) == 1]
    return frozenset(rows + cols)


def is_square(piece):
    return height(piece) == width(piece) and height(piece) * width(piece) == len(locs(piece))


def portrait(piece):
    return height(piece) > width(piece)


def bordering(piece, grid):
    h, w = len(grid), len(grid[0])
    return any(r in (0, h - 1) or c in (0, w - 1) for r, c in locs(piece))


def enclosed_cells(grid, colour):
    """Cells of ``colour`` not connected (4-way, through ``colour``) to the border."""
    h, w = len(grid), len(grid[0])
    outside = set()
    queue = deque((r, c) for r in range(h) for c in range(w)
                  if (r in (0, h - 1) or c in (0, w - 1)) and grid[r][c] == colour)
    outside.update(queue)
    while queue:
        r, c = queue.popleft()
        for n in dneighbors((r, c)):
            y, x = n
            if 0 <= y < h and 0 <= x < w and n not in outside and grid[y][x] == colour:
                outside.add(n)
                queue.append(n)
    return ofcolour(grid, colour) - outside


# ---- a grid object for code that reads better with operators --------------

class Board:
    """A mutable grid with operators: ``b[r, c]``, ``b == other``, iteration over rows."""

    __slots__ = ("rows", "h", "w")

    def __init__(self, rows):
        self.rows = [list(int(v) for v in row) for row in rows]
        self.h = len(self.rows)
        self.w = len(self.rows[0]) if self.rows else 0

    @classmethod
    def blank(cls, h, w, colour=0):
        return cls([[colour] * w for _ in range(h)])

    def __getitem__(self, loc):
        r, c = loc
        return self.rows[r][c]

    def __setitem__(self, loc, value):
        r, c = loc
        self.rows[r][c] = value

    def __contains__(self, loc):
        r, c = loc
        return 0 <= r < self.h and 0 <= c < self.w

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return self.h

    def __eq__(self, other):
        return isinstance(other, Board) and self.rows == other.rows

    def __hash__(self):
        return hash(self.freeze())

    def __repr__(self):
        return "Board(" + "/".join("".join(map(str, row)) for row in self.rows) + ")"

    def copy(self):
        return Board(self.rows)

    def freeze(self):
        return tuple(tuple(row) for row in self.rows)

    def cells(self):
        for r in range(self.h):
            for c in range(self.w):
                yield (r, c), self.rows[r][c]

    def where(self, colour):
        return [loc for loc, v in self.cells() if v == colour]

    def get(self, loc, default=None):
        return self[loc] if loc in self else default

    def paint(self, locations, colour):
        for loc in locations:
            if loc in self:
                self[loc] = colour
        return self

    def tolist(self):
        return [list(row) for row in self.rows]


# ---- searching over candidate transformations ------------------------------

TRANSFORMS = {
    "identity": identity,
    "rot90": rot90,
    "rot180": rot180,
    "rot270": rot270,
    "hmirror": hmirror,
    "vmirror": vmirror,
    "dmirror": dmirror,
    "compress": compress,
    "dedupe": dedupe,
    "trim": trim,
}


def consistent(fn, pairs):
    """True when ``fn`` maps every (input, output) pair exactly."""
    try:
        return all(fn(a) == b for a, b in pairs)
    except Exception:
        return False


def find_transform(pairs):
    for name, fn in TRANSFORMS.items():
        if consistent(fn, pairs):
            return name
    return None


def colour_map_from(pairs):
    """A consistent cell colour mapping learned from pairs of same-shaped grids, or None."""
    mapping = {}
    for a, b in pairs:
        if shape(a) != shape(b):
            return None
        for ra, rb in zip(a, b):
            for x, y in zip(ra, rb):
                if mapping.setdefault(x, y) != y:
                    return None
    return mapping


def histogram(grid):
    return Counter(v for row in grid for v in row)


def symmetric(grid):
    return grid == vmirror(grid) or grid == hmirror(grid)


def period(seq):
    """The smallest period of a sequence (its length when it has none)."""
    n = len(seq)
    for p in range(1, n + 1):
        if all(seq[i] == seq[i % p] for i in range(n)):
            return p
    return n


def tile_to(grid, dims):
    h, w = dims
    gh, gw = len(grid), len(grid[0])
    return tuple(tuple(grid[r % gh][c % gw] for c in range(w)) for r in range(h))


def render(grid):
    return "\n".join("".join(str(v) for v in row) for row in grid)


# ---------------------------------------------------------------------------
# end of gridkit
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# scene: objects with identity, for solvers that reason about "things"
# ---------------------------------------------------------------------------

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Pos:
    r: int
    c: int

    def __add__(self, other):
        if isinstance(other, Pos):
            return Pos(self.r + other.r, self.c + other.c)
        r, c = other
        return Pos(self.r + r, self.c + c)

    def __sub__(self, other):
        return Pos(self.r - other.r, self.c - other.c)

    def __neg__(self):
        return Pos(-self.r, -self.c)

    def __iter__(self):
        yield self.r
        yield self.c

    def __lt__(self, other):
        return (self.r, self.c) < (other.r, other.c)

    def manhattan(self, other):
        return abs(self.r - other.r) + abs(self.c - other.c)

    def chebyshev(self, other):
        return max(abs(self.r - other.r), abs(self.c - other.c))

    def around(self, diagonal=False):
        dirs = EIGHT if diagonal else ORTHO
        return [Pos(self.r + dr, self.c + dc) for dr, dc in dirs]


class Shape:
    """A set of coloured cells; hashable, comparable by size then position."""

    __slots__ = ("_cells", "_key")

    def __init__(self, cells: Iterable[Tuple[int, Tuple[int, int]]]):
        self._cells = frozenset((int(v), (int(r), int(c))) for v, (r, c) in cells)
        self._key = None

    # -- container protocol --
    def __iter__(self):
        return iter(sorted(self._cells, key=lambda vc: vc[1]))

    def __len__(self):
        return len(self._cells)

    def __contains__(self, loc):
        return any(l == tuple(loc) for _, l in self._cells)

    def __bool__(self):
        return bool(self._cells)

    # -- identity --
    def __eq__(self, other):
        return isinstance(other, Shape) and self._cells == other._cells

    def __hash__(self):
        return hash(self._cells)

    def __lt__(self, other):
        return (len(self), self.top_left) < (len(other), other.top_left)

    def __repr__(self):
        return f"Shape({len(self)} cells, colours {sorted(self.colours)}, at {self.top_left})"

    # -- arithmetic: moving and combining --
    def __add__(self, offset):
        dr, dc = offset
        return Shape((v, (r + dr, c + dc)) for v, (r, c) in self._cells)

    def __or__(self, other):
        return Shape(self._cells | other._cells)

    def __and__(self, other):
        mine = {l for _, l in other._cells}
        return Shape((v, l) for v, l in self._cells if l in mine)

    # -- geometry --
    @property
    def locations(self):
        return frozenset(l for _, l in self._cells)

    @property
    def colours(self):
        return frozenset(v for v, _ in self._cells)

    @property
    def colour(self):
        return Counter(v for v, _ in self._cells).most_common(1)[0][0]

    @property
    def top(self):
        return min(r for _, (r, _) in self._cells)

    @property
    def bottom(self):
        return max(r for _, (r, _) in self._cells)

    @property
    def left(self):
        return min(c for _, (_, c) in self._cells)

    @property
    def right(self):
        return max(c for _, (_, c) in self._cells)

    @property
    def top_left(self):
        return (self.top, self.left)

    @property
    def height(self):
        return self.bottom - self.top + 1

    @property
    def width(self):
        return self.right - self.left + 1

    @property
    def area(self):
        return self.height * self.width

    def is_rectangle(self):
        return len(self) == self.area

    def normalized(self):
        return self + (-self.top, -self.left)

    def recoloured(self, colour):
        return Shape((colour, l) for _, l in self._cells)

    def box_locations(self):
        return frozenset(product(range(self.top, self.bottom + 1), range(self.left, self.right + 1)))

    def interior(self):
        """Locations strictly inside the bounding box."""
        return frozenset(product(range(self.top + 1, self.bottom), range(self.left + 1, self.right)))

    def ring(self, diagonal=True):
        """Locations around the shape (8-neighbourhood by default), not in it."""
        dirs = EIGHT if diagonal else ORTHO
        mine = self.locations
        return frozenset((r + dr, c + dc) for r, c in mine for dr, dc in dirs) - mine

    def as_grid(self, background=0):
        norm = self.normalized()
        rows = [[background] * self.width for _ in range(self.height)]
        for v, (r, c) in norm._cells:
            rows[r][c] = v
        return tuple(tuple(row) for row in rows)

    def signature(self):
        """Shape up to translation: the normalized locations."""
        return frozenset(l for _, l in self.normalized()._cells)

    def rotations(self):
        g = self.as_grid()
        out = []
        for _ in range(4):
            out.append(g)
            g = rot90(g)
        return out

    def touches(self, other, diagonal=False):
        mine = self.locations
        dirs = EIGHT if diagonal else ORTHO
        return any((r + dr, c + dc) in mine for r, c in other.locations for dr, dc in dirs)

    def distance(self, other):
        return min(abs(r0 - r1) + abs(c0 - c1) for r0, c0 in self.locations for r1, c1 in other.locations)


class Scene:
    """A grid seen as a background colour plus shapes on it."""

    def __init__(self, grid, *, diagonal=False, by_colour=True, background=None):
        self.grid = as_grid(grid)
        self.h, self.w = len(self.grid), len(self.grid[0])
        self.background = most_colour(self.grid) if background is None else background
        self.diagonal = diagonal
        self.by_colour = by_colour
        self._shapes = None

    def __iter__(self) -> Iterator[Shape]:
        return iter(self.shapes)

    def __len__(self):
        return len(self.shapes)

    def __getitem__(self, i):
        return self.shapes[i]

    def __repr__(self):
        return f"Scene({self.h}x{self.w}, background {self.background}, {len(self)} shapes)"

    @property
    def shapes(self) -> List[Shape]:
        if self._shapes is None:
            found = objects(self.grid, univalued=self.by_colour, diagonal=self.diagonal, without_bg=False)
            keep = [Shape(o) for o in found if colour_of(o) != self.background or not self.by_colour]
            if not self.by_colour:
                keep = [s for s in keep if self.background not in s.colours]
            self._shapes = sorted(keep, key=lambda s: (s.top, s.left, len(s)))
        return self._shapes

    def of_colour(self, colour):
        return [s for s in self.shapes if s.colour == colour]

    def largest(self):
        return max(self.shapes, key=len)

    def smallest(self):
        return min(self.shapes, key=len)

    def group_by(self, key: Callable[[Shape], object]) -> Dict[object, List[Shape]]:
        groups: Dict[object, List[Shape]] = defaultdict(list)
        for s in self.shapes:
            groups[key(s)].append(s)
        return dict(groups)

    def render(self, shapes: Optional[Iterable[Shape]] = None, *, on=None):
        rows = [list(r) for r in (on if on is not None else canvas(self.background, (self.h, self.w)))]
        for s in (self.shapes if shapes is None else shapes):
            for v, (r, c) in s:
                if 0 <= r < self.h and 0 <= c < self.w:
                    rows[r][c] = v
        return tuple(tuple(r) for r in rows)

    def painted(self, locations, colour, *, only_background=False):
        rows = [list(r) for r in self.grid]
        for r, c in locations:
            if 0 <= r < self.h and 0 <= c < self.w:
                if not only_background or rows[r][c] == self.background:
                    rows[r][c] = colour
        return tuple(tuple(r) for r in rows)


# ---- rules learned from the training pairs --------------------------------

class Rule:
    """A candidate rule: a name, a function on grids, and how it did on the pairs."""

    def __init__(self, name: str, fn: Callable):
        self.name = name
        self.fn = fn
        self.score = 0.0

    def __call__(self, grid):
        return self.fn(grid)

    def __repr__(self):
        return f"Rule({self.name}, score={self.score:.2f})"

    def __lt__(self, other):
        return self.score < other.score

    def fit(self, pairs):
        ok = 0
        for a, b in pairs:
            try:
                ok += self.fn(a) == b
            except Exception:
                pass
        self.score = ok / max(1, len(pairs))
        return self.score


def best_rule(rules: Sequence[Rule], pairs) -> Optional[Rule]:
    for rule in rules:
        rule.fit(pairs)
    ranked = sorted(rules, reverse=True)
    return ranked[0] if ranked and ranked[0].score == 1.0 else None


def cell_accuracy(a, b):
    if shape(a) != shape(b):
        return 0.0
    same = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    return same / (len(a) * len(a[0]))


def symmetry_axes(grid):
    axes = []
    if grid == hmirror(grid):
        axes.append("horizontal")
    if grid == vmirror(grid):
        axes.append("vertical")
    if len(grid) == len(grid[0]) and grid == dmirror(grid):
        axes.append("diagonal")
    return axes


def row_period(grid):
    return period(list(grid))


def column_period(grid):
    return period(list(dmirror(grid)))


def colour_rank(grid, exclude=()):
    """Colours from most to least frequent, ties by colour number."""
    counts = histogram(grid)
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c not in exclude]


def line_between(a: Pos, b: Pos) -> List[Pos]:
    return [Pos(r, c) for r, c in sorted(connect(tuple(a), tuple(b)))]


def rays(start: Pos, directions, h, w) -> List[List[Pos]]:
    out = []
    for dr, dc in directions:
        ray = []
        r, c = start.r + dr, start.c + dc
        while 0 <= r < h and 0 <= c < w:
            ray.append(Pos(r, c))
            r, c = r + dr, c + dc
        out.append(ray)
    return out


def majority_vote(grids):
    """Cell-wise majority of several same-shaped grids."""
    h, w = len(grids[0]), len(grids[0][0])
    return tuple(tuple(Counter(g[r][c] for g in grids).most_common(1)[0][0] for c in range(w)) for r in range(h))


def odd_one_out(items, key=lambda x: x):
    counts = Counter(key(x) for x in items)
    rare = [x for x in items if counts[key(x)] == 1]
    return rare[0] if len(rare) == 1 else None


def blocks(grid, bh, bw, gap=0):
    """Split a grid into a lattice of bh x bw blocks separated by ``gap`` lines."""
    out = []
    for r in range(0, len(grid), bh + gap):
        row = []
        for c in range(0, len(grid[0]), bw + gap):
            row.append(crop(grid, (r, c), (bh, bw)))
        out.append(row)
    return out


def grid_lines(grid):
    """Rows and columns that are one non-background colour all the way: dividers."""
    bg = most_colour(grid)
    rows = [r for r, row in enumerate(grid) if len(set(row)) == 1 and row[0] != bg]
    cols = [c for c, col in enumerate(zip(*grid)) if len(set(col)) == 1 and col[0] != bg]
    return rows, cols


def cells_between(lines: List[int], size: int) -> List[Tuple[int, int]]:
    """Spans (start, end) between divider lines."""
    spans, start = [], 0
    for line in lines + [size]:
        if line > start:
            spans.append((start, line))
        start = line + 1
    return spans


def sub_grids(grid):
    rows, cols = grid_lines(grid)
    return [[tuple(row[c0:c1] for row in grid[r0:r1]) for c0, c1 in cells_between(cols, len(grid[0]))]
            for r0, r1 in cells_between(rows, len(grid))]


def entropy(grid):
    counts = histogram(grid)
    n = sum(counts.values())
    return -sum(k / n * math.log2(k / n) for k in counts.values())

# ---------------------------------------------------------------------------
# end of scene
# ---------------------------------------------------------------------------


def transform(grid):
    scene = Scene(grid.tolist(), diagonal=False)
    pairs = [s for s in scene.of_colour(2) if len(s) == 2]
    frame = set()
    for s in pairs:
        frame |= s.ring(diagonal=True)
    return [list(r) for r in scene.painted(frame, 3, only_background=True)]
