"""Configuration: composites from YAML, pipeline files, and the class registry.

- :func:`class_factory` makes a composite node class from a configuration mapping.
- :func:`load_pipeline` builds a whole pipeline from a YAML file; :func:`read_pipeline`
  reads and checks one without building it; :func:`to_yaml` writes a pipeline back out.
- :func:`read_config` reads a file that is either a pipeline file or a composite
  configuration (what the ``nanostream`` command reads).
- :func:`resolve` and :func:`register` are the registry that turns names into classes.

YAML is always read with the safe loader, and nothing in a configuration is evaluated; a
``class:`` resolves only to a node class, a registered name, a nanostream node constructor,
a function of an entry point's package or a function of the user's own code in a declared
module, checked before anything is called (see :mod:`nanostream.config.registry`).

Example:
    >>> import io, nanostream
    >>> pipeline = nanostream.load_pipeline(io.StringIO('''
    ... nodes:
    ...   numbers: {class: IterableSource, args: {iterable: [1, 2]}}
    ...   sink: {class: "nanostream.testing:Collect"}
    ... '''))
    >>> [n.name for n in pipeline.plan().nodes]
    ['numbers', 'sink']
"""

from __future__ import annotations

from ._common import ConfigErrors
from .factory import ConfiguredComposite, class_factory, read_config
from .pipeline import EdgeSpec, NodeSpec, PipelineSpec, load_pipeline, read_pipeline
from .registry import known_names, register, resolve, unregister
from .writer import to_yaml

__all__ = [
    "ConfigErrors",
    "ConfiguredComposite",
    "EdgeSpec",
    "NodeSpec",
    "PipelineSpec",
    "class_factory",
    "known_names",
    "load_pipeline",
    "read_config",
    "read_pipeline",
    "register",
    "resolve",
    "to_yaml",
    "unregister",
]
