"""spreadedge: the PostgreSQL trading database of CryptoSpreadEdge (CLI, managers, API, ops).

A regular package, not a namespace one: an installed spreadedge is this directory alone, and a
directory named spreadedge elsewhere on the path (a checkout) is not merged into it.
"""
