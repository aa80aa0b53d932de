"""A small max-flow / min-cut (Dinic's algorithm) for the memory planner.

Nodes are hashable labels; ``min_cut`` returns the set of nodes on the source side of a
minimum cut. Loops only (no recursion), so graphs of tens of thousands of nodes are fine.
"""

from __future__ import annotations

from collections import deque

INF = float("inf")


class FlowGraph:
    def __init__(self):
        self._index = {}
        self._adj = []  # node -> list of edge ids
        self._to = []
        self._cap = []

    def _node(self, label) -> int:
        i = self._index.get(label)
        if i is None:
            i = self._index[label] = len(self._adj)
            self._adj.append([])
        return i

    def add_edge(self, u, v, cap: float) -> None:
        a, b = self._node(u), self._node(v)
        self._adj[a].append(len(self._to))
        self._to.append(b)
        self._cap.append(cap)
        self._adj[b].append(len(self._to))
        self._to.append(a)
        self._cap.append(0.0)

    def _levels(self, s, t):
        level = [-1] * len(self._adj)
        level[s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for e in self._adj[u]:
                if self._cap[e] > 0 and level[self._to[e]] < 0:
                    level[self._to[e]] = level[u] + 1
                    queue.append(self._to[e])
        return level if level[t] >= 0 else None

    def _augment(self, s, t, level, it) -> float:
        """One blocking-flow path by iterative DFS; 0 when none is left."""
        path = []  # edge ids
        u = s
        while True:
            if u == t:
                f = min(self._cap[e] for e in path)
                for e in path:
                    self._cap[e] -= f
                    self._cap[e ^ 1] += f
                return f
            adj = self._adj[u]
            advanced = False
            while it[u] < len(adj):
                e = adj[it[u]]
                v = self._to[e]
                if self._cap[e] > 0 and level[v] == level[u] + 1:
                    path.append(e)
                    u = v
                    advanced = True
                    break
                it[u] += 1
            if not advanced:
                if not path:
                    return 0.0
                level[u] = -1  # dead end
                e = path.pop()
                u = self._to[e ^ 1]
                it[u] += 1

    def min_cut(self, source, sink) -> tuple[float, set]:
        s, t = self._node(source), self._node(sink)
        total = 0.0
        while (level := self._levels(s, t)) is not None:
            it = [0] * len(self._adj)
            while (f := self._augment(s, t, level, it)) > 0:
                if f == INF:
                    raise ValueError("min_cut: the source reaches the sink by infinite edges")
                total += f
        seen = {s}
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for e in self._adj[u]:
                if self._cap[e] > 0 and self._to[e] not in seen:
                    seen.add(self._to[e])
                    queue.append(self._to[e])
        labels = {i: label for label, i in self._index.items()}
        return total, {labels[i] for i in seen}
