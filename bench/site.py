"""A wide generated site for P4: tests/sites.py's TestSite serving a fan-out graph.

TestSite's own graph is a random recursive tree, whose first two link levels hold a few
dozen pages whatever its size, so a crawl to depth 2 cannot reach the 500 pages P4
needs. This graph is a complete `branching`-ary tree ("/" → "/p/1".."/p/B" → …) three
levels deep, plus links that do not change a page's link distance (back to "/", up to
the parent, across to a sibling, one repeated link), so the pages within depth 2 are
exactly the first three levels: 1 + B + B² of them (553 for B = 23), whatever order
a crawler fetches them in. Depth-2 pages link to 3 deeper pages each, which a depth-2
crawl must not fetch. Page 1 also links to a 404 and to a robots-disallowed page, and
TestSite renders every link in varied spellings (relative, absolute, with fragments).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from bench.common import REPO_ROOT


def load_test_sites() -> ModuleType:
    """tests/sites.py, imported from its file (tests/ is not a package)."""
    name = "quaero_tests_sites"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / "sites.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def wide_graph(branching: int, leaf_links: int = 3) -> dict[str, list[str]]:
    """A complete `branching`-ary tree of pages, heap-numbered, and its extra links."""
    sites = load_test_sites()
    b = branching
    level_sizes = [1, b, b * b, b * b * leaf_links]
    first_of = [sum(level_sizes[:n]) for n in range(len(level_sizes))]
    total = sum(level_sizes)

    def children(i: int, level: int) -> list[int]:
        if level == 3:
            return []
        if level == 2:
            offset = first_of[3] + (i - first_of[2]) * leaf_links
            return list(range(offset, offset + leaf_links))
        return [i * b + 1 + n for n in range(b)]

    def level_of(i: int) -> int:
        return max(n for n in range(len(level_sizes)) if first_of[n] <= i)

    graph: dict[str, list[str]] = {}
    for i in range(total):
        level = level_of(i)
        links = children(i, level)
        if level > 0:
            parent = (i - 1) // b if level < 3 else first_of[2] + (i - first_of[3]) // leaf_links
            sibling = i + 1 if i + 1 < first_of[level] + level_sizes[level] else first_of[level]
            links += [0, parent, sibling]
        if links:
            links.append(links[len(links) // 2])  # the same link twice on one page
        graph[sites.page_path(i)] = [sites.page_path(j) for j in links]
    graph[sites.page_path(1)] += [sites.MISSING, sites.PRIVATE]
    graph.update({sites.MISSING: [], sites.PRIVATE: []})
    return graph


def make_site(branching: int, delay: float):
    """A TestSite (not started) serving the wide graph with `delay` s per response."""
    sites = load_test_sites()
    site = sites.TestSite(n_pages=1, delay=delay)
    site.graph = wide_graph(branching)
    return site
