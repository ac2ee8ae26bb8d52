"""ARC ded97339: azure (8) cells that share a row or a column are joined by
azure lines."""

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


AZURE = 8


def joins(points):
    lines = set()
    for (r0, c0), (r1, c1) in ((a, b) for i, a in enumerate(points) for b in points[i + 1:]):
        if r0 == r1:
            lines.update((r0, c) for c in range(min(c0, c1), max(c0, c1) + 1))
        elif c0 == c1:
            lines.update((r, c0) for r in range(min(r0, r1), max(r0, r1) + 1))
    return lines


def transform(grid):
    g = G(grid)
    return g.with_cells({p: AZURE for p in joins(g.where(AZURE))}).tolist()
