"""pytest plugin for `make mutation` only: mutmut 3.7 reads ``item._nodeid``, which pytest 9
renamed; mutmut 3.8 reads ``item.nodeid`` but needs click>=8.4.2, which faust-streaming
refuses (click<8.4). Loaded with ``-p mutation_compat`` by mk/mutation.mk, never by ``make test``.
"""

from _pytest.nodes import Node

if not hasattr(Node, "_nodeid"):
    Node._nodeid = property(lambda self: self.nodeid)  # type: ignore[attr-defined]
