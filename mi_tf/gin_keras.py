"""gin configurables for Keras 3 layers and models.

gin replaces ``__init__`` with a ``(*args, **kwargs)`` wrapper; Keras 3 reads the constructor's
argspec in ``Operation.__new__`` (for ``get_config``) and fails on it (IndexError). Restoring
the original signature on the wrapper as ``__signature__`` satisfies both.
"""

import inspect

import gin


def configurable(cls):
  """``@gin.configurable`` for a Keras layer or model class, under its own name."""
  signature = inspect.signature(cls.__init__)
  cls = gin.configurable(cls)
  cls.__init__.__signature__ = signature
  return cls


def external_configurable(cls):
  """``gin.external_configurable`` for a Keras layer class defined without gin: registers a
  subclass of the same name (what ``@Name`` in a gin file builds); ``cls`` is unchanged."""
  signature = inspect.signature(cls.__init__)
  configurable_cls = gin.external_configurable(cls)
  configurable_cls.__init__.__signature__ = signature
  return configurable_cls
