"""One model_dir on disk: what a run writes besides its TensorBoard events and metrics.

Layout (README.md, "Layout of a model_dir"):
  config.gin            the gin config the run was started with (a resume must match it)
  operative_config.gin  the operative gin config (written after the first step)
  run_info.json         seed, versions, task, and one entry per session (start step, command,
                        host, strategy, replicas)
  checkpoints/          tf.train.CheckpointManager checkpoints (models, optimizers, step)
  export/               SavedModel of g1 (``mi_tf.export``); export/step_<k>/ per evaluation
                        if asked
  final_metrics.json    the last evaluation and the wall time (wall_seconds: all sessions;
                        wall_seconds_this_session); present only when the run finished

The training loop decides WHEN each of these is written; this module decides WHAT and HOW.
Every path goes through tf.io.gfile, so model_dir may be a gs:// bucket.
"""

import datetime
import difflib
import json
import logging
import os
import socket
import sys
import tempfile

import gin
import numpy as np
import tensorflow as tf

from mi_tf import export as export_lib

_LOG = logging.getLogger(__name__)

CONFIG_FILE = 'config.gin'
OPERATIVE_CONFIG_FILE = 'operative_config.gin'
RUN_INFO_FILE = 'run_info.json'
FINAL_METRICS_FILE = 'final_metrics.json'
CHECKPOINTS = 'checkpoints'
EXPORT = 'export'


class RunDirError(ValueError):
  """The model_dir holds a different run; nothing in it was changed."""


def versions():
  """Versions of the packages that decide a run's numbers."""
  import keras  # pylint: disable=g-import-not-at-top
  import sklearn  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  return {'python': sys.version.split()[0], 'tensorflow': tf.__version__,
          'keras': keras.__version__, 'tensorflow_probability': tfp.__version__,
          'tensorflow_datasets': tfds.__version__, 'gin': getattr(gin, '__version__', '?'),
          'scikit-learn': sklearn.__version__, 'numpy': np.__version__}


def checkpoint_candidates(directory, latest=None):
  """Checkpoint prefixes in ``directory``, newest step first.

  Read from the files themselves (ckpt-<step>.index), not only from the manager's state file
  (``latest``), which may be stale or lost when a process is killed while writing it.
  """
  prefixes = {p[:-len('.index')] for p in tf.io.gfile.glob(
      os.path.join(directory, 'ckpt-*.index'))}
  if latest:
    prefixes.add(latest)

  def _number(prefix):
    try:
      return int(prefix.rsplit('-', 1)[1])
    except ValueError:
      return -1

  return sorted(prefixes, key=_number, reverse=True)


def restore_newest(manager, checkpoint):
  """Restores the newest readable checkpoint; falls back to older ones with a warning.

  Returns:
    The restored prefix, or None if there is no checkpoint (a new run).
  Raises:
    RuntimeError: there are checkpoints, but none is readable.
  """
  candidates = checkpoint_candidates(manager.directory, manager.latest_checkpoint)
  for path in candidates:
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
      return path
    except (tf.errors.OpError, AssertionError, ValueError) as e:
      _LOG.warning('Checkpoint %s is unreadable (%s: %s); trying the previous one.',
                   path, type(e).__name__, str(e).splitlines()[0][:200])
  if candidates:
    raise RuntimeError(f'No readable checkpoint in {manager.directory}; move the directory '
                       'away to start fresh.')
  return None


def wall_seconds_before(records, start_step):
  """Wall seconds that earlier sessions spent on the first ``start_step`` steps, from the
  run's metrics records (those ``MetricsLog.truncate_from`` kept).

  Every training record carries ``wall_seconds``: the training and evaluation time of all
  sessions so far, each counted up to the checkpoint its successor resumed from (the steps
  after that checkpoint are redone, and counted, once). A run resumed at step s reads it from
  the training record at s, written just before that checkpoint. Returns 0.0 for a new run and
  None when the record is absent (a run begun before this was recorded): then the total
  is unknown and ``final_metrics.json`` has only ``wall_seconds_this_session``.
  """
  if start_step == 0:
    return 0.0
  for record in records:
    if (record['step'] == start_step and record['split'] == 'train'
        and record['metric'] == 'wall_seconds'):
      return float(record['value'])
  return None


class RunDir:
  """The files of one run, as written by one process.

  ``path`` is where this process writes: the model_dir on the chief, a scratch directory
  ``<worker_dir>/<type>_<index>`` on the other workers of a multi-worker run (they take part
  in every collective but must not write to the model_dir, so only the chief checks the
  config, exports and owns the run).
  """

  def __init__(self, model_dir, chief=True, worker_dir=None, task_info=('chief', 0)):
    self.model_dir = model_dir
    self.chief = chief
    if chief:
      self.path = model_dir
    else:
      task_type, task_id = task_info
      self.path = os.path.join(worker_dir or tempfile.mkdtemp(prefix='mi_tf_worker_'),
                               f'{task_type}_{task_id}')

  def join(self, *names):
    return os.path.join(self.path, *names)

  def start(self, config_str):
    """Creates the directory; on the chief, refuses a model_dir of another gin config and
    writes config.gin for a new run. Returns whether the run is resumed."""
    resuming = self._check_config(config_str) if self.chief else False
    tf.io.gfile.makedirs(self.path)
    if self.chief and not resuming:
      with tf.io.gfile.GFile(self.join(CONFIG_FILE), 'w') as f:
        f.write(config_str)
    return resuming

  def _check_config(self, config_str):
    path = os.path.join(self.model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
      return False
    with tf.io.gfile.GFile(path) as f:
      old = f.read()
    if old != config_str:
      diff = '\n'.join(difflib.unified_diff(old.splitlines(), config_str.splitlines(),
                                            'in model_dir', 'this command', lineterm='', n=0))
      raise RunDirError(
          f'{self.model_dir} holds a run started with a different gin config, so it cannot be '
          f'resumed with this one (nothing was changed). Use a new --model_dir to start fresh, '
          f'or rerun with the original config. Difference:\n{diff}')
    return True

  def checkpoint_manager(self, checkpoint, max_to_keep):
    return tf.train.CheckpointManager(checkpoint, self.join(CHECKPOINTS),
                                      max_to_keep=max_to_keep)

  def write_run_info(self, seed, strategy, start_step, task):
    """Adds this session to run_info.json (seed and versions are those of the first)."""
    path = self.join(RUN_INFO_FILE)
    info = {}
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        info = json.load(f)
    session = {'start_time': datetime.datetime.now().isoformat(timespec='seconds'),
               'start_step': start_step, 'command': sys.argv, 'host': socket.gethostname(),
               'strategy': type(strategy).__name__,
               'num_replicas': strategy.num_replicas_in_sync}
    info.setdefault('seed', seed)
    info.setdefault('versions', versions())
    info['task'] = task.metadata()
    info.setdefault('sessions', []).append(session)
    with tf.io.gfile.GFile(path, 'w') as f:
      json.dump(info, f, indent=2)

  def write_operative_config(self, writer, step):
    """gin's operative config lists only configurables already called: write it after a
    step. Also logged as a TensorBoard text summary (gin/operative_config)."""
    text = gin.operative_config_str()
    with tf.io.gfile.GFile(self.join(OPERATIVE_CONFIG_FILE), 'w') as f:
      f.write(text)
    with writer.as_default(step=step):
      tf.summary.text('gin/operative_config', gin.markdown(text))
    writer.flush()

  def export(self, task, metadata, subdir=None):
    """Exports the task's representation (if it has one) to export/ (or export/<subdir>/)."""
    exported = task.export_model()
    if exported is None or not self.chief:
      return
    model, input_shape = exported
    path = self.join(EXPORT, subdir) if subdir else self.join(EXPORT)
    export_lib.export_encoder(model, path, input_shape, metadata=dict(task.metadata(),
                                                                      **metadata))

  def write_final_metrics(self, values):
    with tf.io.gfile.GFile(self.join(FINAL_METRICS_FILE), 'w') as f:
      json.dump(values, f, indent=2, sort_keys=True)
