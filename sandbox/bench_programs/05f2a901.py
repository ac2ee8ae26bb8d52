"""ARC 05f2a901: the red (2) shape slides straight toward the azure (8)
square until the two touch."""

# ---- grid helpers (shared header of my ARC solvers) ----

from collections import Counter, deque


class G:
    """A grid as a tuple of tuples, with the operations a solver keeps needing."""

    __slots__ = ("cells", "h", "w")

    def __init__(self, rows):
        self.cells = tuple(tuple(int(v) for v in row) for row in rows)
        self.h = len(self.cells)
        self.w = len(self.cells[0]) if self.cells else 0

    def __getitem__(self, rc):
        return self.cells[rc[0]][rc[1]]

    def __iter__(self):
        return iter(self.cells)

    def __len__(self):
        return self.h

    def __eq__(self, other):
        return isinstance(other, G) and self.cells == other.cells

    def __hash__(self):
        return hash(self.cells)

    def __repr__(self):
        return "G<" + "|".join("".join(map(str, r)) for r in self.cells) + ">"

    def __contains__(self, rc):
        return 0 <= rc[0] < self.h and 0 <= rc[1] < self.w

    @property
    def shape(self):
        return (self.h, self.w)

    def positions(self):
        return ((r, c) for r in range(self.h) for c in range(self.w))

    def where(self, colour):
        return [(r, c) for r, c in self.positions() if self.cells[r][c] == colour]

    def background(self):
        return Counter(v for row in self.cells for v in row).most_common(1)[0][0]

    def with_cells(self, changes):
        rows = [list(r) for r in self.cells]
        for (r, c), v in changes.items():
            if 0 <= r < self.h and 0 <= c < self.w:
                rows[r][c] = v
        return G(rows)

    def tolist(self):
        return [list(r) for r in self.cells]

    def transpose(self):
        return G(zip(*self.cells))

    def flip_lr(self):
        return G(r[::-1] for r in self.cells)

    def flip_ud(self):
        return G(self.cells[::-1])


def neighbours4(r, c):
    return ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))


def neighbours8(r, c):
    return tuple((r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc)


def components(g, keep, diagonal=False):
    """Connected groups of positions whose colour satisfies ``keep``."""
    near = neighbours8 if diagonal else neighbours4
    seen, groups = set(), []
    for start in g.positions():
        if start in seen or not keep(g[start]):
            continue
        seen.add(start)
        group, queue = [], deque([start])
        while queue:
            cur = queue.popleft()
            group.append(cur)
            for nxt in near(*cur):
                if nxt in g and nxt not in seen and keep(g[nxt]):
                    seen.add(nxt)
                    queue.append(nxt)
        groups.append(group)
    return groups


def bounds(points):
    rs = [r for r, _ in points]
    cs = [c for _, c in points]
    return min(rs), min(cs), max(rs), max(cs)

# ---- end of grid helpers ----

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


# ---- patches (the few this solver family needs) ----

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


def backdrop(piece):
    if not piece:
        return frozenset()
    (r0, c0), (r1, c1) = ulcorner(piece), lrcorner(piece)
    return frozenset(product(range(r0, r1 + 1), range(c0, c1 + 1)))


def box(piece):
    """The outline of the bounding box."""
    if not piece:
        return frozenset()
    (r0, c0), (r1, c1) = ulcorner(piece), lrcorner(piece)
    out = {(r, c0) for r in range(r0, r1 + 1)} | {(r, c1) for r in range(r0, r1 + 1)}
    out |= {(r0, c) for c in range(c0, c1 + 1)} | {(r1, c) for c in range(c0, c1 + 1)}
    return frozenset(out)


def dneighbors(loc):
    return neighbors(loc, ORTHO)


def neighbors(loc, dirs=ORTHO):
    r, c = loc
    return frozenset((r + dr, c + dc) for dr, dc in dirs)


# ---- end of gridkit (excerpt) ----

RED, AZURE, BG = 2, 8, 0


def cells_of(rows, colour):
    return {(r, c) for r, row in enumerate(rows) for c, v in enumerate(row) if v == colour}


def bbox(cells):
    rs = [r for r, _ in cells]
    cs = [c for _, c in cells]
    return min(rs), min(cs), max(rs), max(cs)


def touching(a, b):
    return any((r + dr, c + dc) in b for r, c in a for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)))


def direction(mover, target):
    r0, c0, r1, c1 = bbox(mover)
    t0, u0, t1, u1 = bbox(target)
    if c1 < u0:
        return (0, 1)
    if c0 > u1:
        return (0, -1)
    if r1 < t0:
        return (1, 0)
    return (-1, 0)


def transform(grid):
    rows = [list(map(int, row)) for row in grid]
    red, azure = cells_of(rows, RED), cells_of(rows, AZURE)
    dr, dc = direction(red, azure)
    moved = set(red)
    for _ in range(len(rows) + len(rows[0])):
        if touching(moved, azure):
            break
        moved = {(r + dr, c + dc) for r, c in moved}
    for r, c in red:
        rows[r][c] = BG
    for r, c in moved:
        rows[r][c] = RED
    return rows
