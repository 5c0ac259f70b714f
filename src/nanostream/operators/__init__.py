"""The operators: nodes that transform, batch, window, join and route items.

Map, filter, flat map, batch, take, throttle and the worker pools are in
:mod:`~nanostream.operators.transforms`; windows in
:mod:`~nanostream.operators.window`, keyed state (aggregate, reduce, dedupe) in
:mod:`~nanostream.operators.aggregate`; joins, merge and routing in
:mod:`~nanostream.operators.join`. They share the operator base (policies, acknowledgements,
worker pools) in ``_operator.py`` and event time in ``_time.py``. The public import path of
every operator is :mod:`nanostream.nodes` (or ``nanostream`` itself).

Example:
    >>> import nanostream.operators.transforms
    >>> nanostream.operators.transforms.Map is nanostream.nodes.Map
    True
"""
