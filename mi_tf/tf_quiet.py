"""A quiet TensorFlow start for this package's programs (``mi-tf-train``, ``mi-tf-probe``,
``mi-tf-reproduce``): ``quiet_tensorflow_start()`` before anything imports TensorFlow.

Plain Python: it imports neither TensorFlow nor anything of mi_tf.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile


# Importing TensorFlow 2.21 writes, on a machine without CUDA, these lines twice (once per copy
# of absl's C++ logging: libtensorflow_framework.so.2 and the profiler's extension each hold
# one):
#   WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
#   I0000 00:00:1796137895.899312   16584 cudart_stub.cc:31] Could not find cuda drivers on your
#   machine, GPU will not be used.
# They are logged by static initializers while the shared libraries load (dlopen), before
# TensorFlow applies TF_CPP_MIN_LOG_LEVEL, and absl's C++ logging reads no environment
# variable: no setting silences them (TF_CPP_MIN_LOG_LEVEL=3 does silence the cpu_feature_guard
# line that follows). So, only while `tensorflow` is first imported, file descriptor 2 goes to
# a temporary file; afterwards every line of it but these known ones is written to stderr, in
# order. TF_CPP_MIN_LOG_LEVEL=0 (show INFO) turns the filter off.
# On a CPU with AVX-512 (seen on a 2-core AMD EPYC family 26 VM, 2026-12-02), the same import
# also logs, twice, from port.cc: "oneDNN custom operations are on. You may see slightly
# different numerical results due to floating-point round-off errors from different
# computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`."
# (TensorFlow enables them by default on such CPUs; the runs record nothing of it, so results
# from machines with and without AVX-512 agree to round-off, not bit for bit.)
_TF_IMPORT_NOISE = (
    re.compile(rb'WARNING: All log messages before absl::InitializeLog\(\) is called are written '
               rb'to STDERR\r?\n?'),
    re.compile(rb'I\d{4} [\d:.]+ +\d+ (\S*/)?cudart_stub\.cc:\d+\] Could not find cuda drivers on '
               rb'your machine, GPU will not be used\.\r?\n?'),
    re.compile(rb'I\d{4} [\d:.]+ +\d+ (\S*/)?port\.cc:\d+\] oneDNN custom operations are on\. '
               rb'You may see slightly different numerical results due to floating-point '
               rb'round-off errors from different computation orders\. To turn them off, set '
               rb'the environment variable `TF_ENABLE_ONEDNN_OPTS=0`\.\r?\n?'),
)


def _is_tf_import_noise(line):
  return any(p.fullmatch(line) for p in _TF_IMPORT_NOISE)


def _min_log_level():
  try:
    return int(os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0'))
  except ValueError:
    return 0


@contextlib.contextmanager
def filtered_stderr(is_noise):
  """Within the block, file descriptor 2 goes to a temporary file; at its end the lines for
  which ``is_noise(line: bytes)`` is false are written to stderr. Without a usable fd 2 (or
  sys.stderr), nothing is redirected.

  The lines come out when the block ends: a process that dies inside it loses them (hence
  used only around the import of TensorFlow, and off with TF_CPP_MIN_LOG_LEVEL=0).
  """
  try:
    if sys.stderr is not None:
      sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):
    saved = None
  if saved is None:
    yield
    return
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      try:
        if sys.stderr is not None:
          sys.stderr.flush()
      except (OSError, ValueError):
        pass
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = b''.join(line for line in capture.read().splitlines(keepends=True)
                      if not is_noise(line))
      while kept:
        kept = kept[os.write(2, kept):]


class _QuietLoader(importlib.abc.Loader):
  """Runs another loader's exec_module under ``filtered_stderr``; then puts it back."""

  def __init__(self, loader):
    self._loader = loader

  def __getattr__(self, name):
    return getattr(self._loader, name)

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    try:
      with filtered_stderr(_is_tf_import_noise):
        self._loader.exec_module(module)
    finally:
      module.__loader__ = self._loader
      if getattr(module, '__spec__', None) is not None:
        module.__spec__.loader = self._loader


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
  """Meta path finder that acts once, on the first import of ``tensorflow``, wherever it
  happens (mi_tf.launch, or the report's figures, imported lazily): it finds the module as
  usual and wraps its loader in ``_QuietLoader``."""

  def find_spec(self, fullname, path=None, target=None):  # pylint: disable=unused-argument
    if fullname != 'tensorflow':
      return None
    _remove_hook()
    spec = importlib.util.find_spec(fullname)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def _remove_hook():
  sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]


def quiet_tensorflow_start():
  """Sets TF_CPP_MIN_LOG_LEVEL=3 unless set (TensorFlow's C++ INFO, WARNING and ERROR lines
  off), and, unless TensorFlow is imported already or TF_CPP_MIN_LOG_LEVEL is 0, filters the
  lines its import writes anyway (see above) out of stderr. Call it before anything imports
  TensorFlow; it imports nothing itself. Idempotent."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  if 'tensorflow' in sys.modules or _min_log_level() < 1:
    return
  if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowImport())
