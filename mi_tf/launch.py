"""Starts a run from gin files: registers every configurable, parses gin, calls ``train``.

The one module that knows every configurable (compare_gan's ``main.py`` keeps its
registration imports in the binary, not in a module the library imports): gin files can name
``@MIMaximization``, ``@MLP``, ``@Bilinear``, ``ImageHalves.dataset``, ``linear_probe.C`` or
``train.num_steps`` once this module is imported. ``train.py`` and the benchmarks call
``train_with_gin``; tests and scripts that only build objects call ``parse_gin``.
"""

import logging
import os

import gin
import tensorflow as tf

from mi_tf import critics
from mi_tf import data  # noqa: F401  ImageHalves.
from mi_tf import encoders  # noqa: F401  MLP, ConvNet, RealNVP, ResidualMLP.
from mi_tf import gin_files as gin_files_lib
from mi_tf import gin_keras
from mi_tf import probe  # noqa: F401  linear_probe, converged_probe.
from mi_tf import train_lib
from mi_tf.tasks import adversarial  # noqa: F401
from mi_tf.tasks import gaussian_toy  # noqa: F401
from mi_tf.tasks import metric  # noqa: F401
from mi_tf.tasks import mi_maximization  # noqa: F401
from mi_tf.tasks import supervised  # noqa: F401

# The critics are plain Keras layers (mi_tf.critics imports no gin: the known-MI validation
# uses them without gin); here they become configurable under their own names.
for _critic in (critics.Bilinear, critics.Separable, critics.Concat, critics.InnerProduct,
                critics.Cosine):
  gin_keras.external_configurable(_critic)

_SEARCH_PATHS = set()


def parse_gin(gin_files=(), gin_bindings=(), search_paths=()):
  """Clears gin, then parses gin files and bindings.

  Each gin file is a path or a name (``gin_files.resolve``: as given, else under each of
  ``search_paths``, else in the package's gin folder, with or without a leading ``gin/``).
  Includes are looked up in the same places: the folders of the files given (so that
  ``include 'mnist_protocol.gin'`` finds its neighbour), ``search_paths`` and the gin folder
  (so that ``include 'common/mnist_protocol.gin'`` works from any directory).

  Unknown configurables or parameters, missing files, and fragments given without an
  experiment file raise here.
  """
  resolved = [gin_files_lib.resolve(f, search_paths) for f in gin_files]
  if resolved and all(gin_files_lib.is_fragment(f) for f in resolved):
    raise ValueError(
        f'{", ".join(gin_files)}: only shared fragments of the gin folder\'s common/, which '
        'the experiment files include or which follow one; give an experiment file first, '
        'e.g. --gin_file=sec3_2_critics_bilinear_infonce.gin --gin_file=common/quick.gin '
        '(--helpfull lists the experiment files).')
  missing = [f for f in resolved if '://' in f and not tf.io.gfile.exists(f)]
  if missing:
    raise FileNotFoundError(f'gin file(s) not found: {missing}')
  gin.clear_config()
  folders = [os.path.dirname(os.path.abspath(f)) for f in resolved if '://' not in f]
  folders += [os.path.abspath(p) for p in search_paths] + [str(gin_files_lib.gin_dir())]
  for directory in folders:
    if directory not in _SEARCH_PATHS:
      gin.add_config_file_search_path(directory)
      _SEARCH_PATHS.add(directory)
  # gin logs an ERROR for each include it finds only on the search path: hide that noise.
  gin_logger = logging.getLogger()
  level = gin_logger.level
  gin_logger.setLevel(logging.CRITICAL)
  try:
    gin.parse_config_files_and_bindings(resolved, list(gin_bindings),
                                        finalize_config=False)
  finally:
    gin_logger.setLevel(level)


def train_with_gin(model_dir, gin_files=(), gin_bindings=(), search_paths=(), **train_kwargs):
  """Parses gin files and bindings (``parse_gin``), runs ``train(model_dir, ...)``, clears
  the config.

  Unknown configurables or parameters, and missing files, raise before anything is written.
  """
  try:
    parse_gin(gin_files, gin_bindings, search_paths)
    return train_lib.train(model_dir, **train_kwargs)
  finally:
    gin.clear_config()
