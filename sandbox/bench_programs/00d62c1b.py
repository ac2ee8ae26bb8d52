"""ARC 00d62c1b: green (3) walls enclose pockets of black; every black cell
that cannot reach the border through black cells becomes yellow (4)."""

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


from collections import deque

WALL, EMPTY, FILL = 3, 0, 4


class Region:
    """Black cells reachable from the grid border, found by breadth-first search."""

    def __init__(self, rows):
        self.rows = rows
        self.h = len(rows)
        self.w = len(rows[0])
        self.reached = set()

    def inside(self, r, c):
        return 0 <= r < self.h and 0 <= c < self.w

    def border_cells(self):
        for r in range(self.h):
            for c in range(self.w):
                if r in (0, self.h - 1) or c in (0, self.w - 1):
                    yield r, c

    def flood_from_border(self):
        queue = deque()
        for r, c in self.border_cells():
            if self.rows[r][c] == EMPTY and (r, c) not in self.reached:
                self.reached.add((r, c))
                queue.append((r, c))
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if self.inside(nr, nc) and (nr, nc) not in self.reached and self.rows[nr][nc] == EMPTY:
                    self.reached.add((nr, nc))
                    queue.append((nr, nc))
        return self.reached

    def __contains__(self, loc):
        return loc in self.reached


def transform(grid):
    rows = [list(map(int, row)) for row in grid]
    region = Region(rows)
    region.flood_from_border()
    for r in range(region.h):
        for c in range(region.w):
            if rows[r][c] == EMPTY and (r, c) not in region:
                rows[r][c] = FILL
    return rows
