"""The collaborative core: deltas and their transformation, and the live document.

Plain Python with no web framework, SQL or I/O, so it can be tested on its own.
"""
