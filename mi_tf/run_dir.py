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
import importlib
import importlib.metadata
import json
import logging
import os
import re
import socket
import sys
import tempfile

import gin
import tensorflow as tf

from mi_tf import export as export_lib
from mi_tf import files
from mi_tf import provenance

_LOG = logging.getLogger(__name__)

CONFIG_FILE = 'config.gin'
OPERATIVE_CONFIG_FILE = 'operative_config.gin'
RUN_INFO_FILE = 'run_info.json'
FINAL_METRICS_FILE = 'final_metrics.json'
CHECKPOINTS = 'checkpoints'
EXPORT = 'export'


class RunDirError(ValueError):
  """The model_dir holds a different run; nothing in it was changed."""


# The packages that decide a run's numbers: run_info.json's key -> (distribution, module).
_VERSIONED = {'tensorflow': ('tensorflow', 'tensorflow'), 'keras': ('keras', 'keras'),
              'tensorflow_probability': ('tensorflow-probability', 'tensorflow_probability'),
              'tensorflow_datasets': ('tensorflow-datasets', 'tensorflow_datasets'),
              'gin': ('gin-config', 'gin'), 'scikit-learn': ('scikit-learn', 'sklearn'),
              'numpy': ('numpy', 'numpy'), 'tensorboard': ('tensorboard', 'tensorboard')}


def versions():
  """Versions of the packages that decide a run's numbers: {'python', 'tensorflow', ...}.

  Read from the installed distribution's metadata (gin has no ``__version__``), else from the
  module's ``__version__`` (a package imported from a source tree), else '?'. The TensorFlow
  distribution may be installed as tensorflow-cpu, tf-nightly...: then tf.__version__.
  """
  out = {'python': sys.version.split()[0]}
  for key, (distribution, module) in _VERSIONED.items():
    try:
      out[key] = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
      try:
        out[key] = getattr(importlib.import_module(module), '__version__', '?')
      except ImportError:
        out[key] = '?'
  return out


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


_NUM_STEPS_LINE = re.compile(r'^train\.num_steps\s*=.*$', re.MULTILINE)


def _without_num_steps(config_str):
  """A gin config string without its ``train.num_steps`` binding (the one change a run can
  take: it continues to another length)."""
  return _NUM_STEPS_LINE.sub('', config_str)


def _checkpoint_step(prefix):
  try:
    return int(prefix.rsplit('-', 1)[1])
  except ValueError:
    return 0


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

  def start(self, config_str, num_steps=None):
    """Creates the directory; on the chief, checks a model_dir that holds a run, and writes
    config.gin for a new or continued run.

    A model_dir of another gin config is refused (``RunDirError``, nothing changed), except
    for ``train.num_steps``: a run stopped or finished at step s continues to any
    ``num_steps >= s`` (its config.gin is rewritten with the new value, and the
    final_metrics.json of a finished run is kept as ``final_metrics.step_<s>.json``). A run
    that already finished ``num_steps`` steps is left untouched.

    Returns:
      'new', 'resumed' (same config), 'continued' (another num_steps) or 'finished' (nothing
      to do; nothing was written).
    """
    state = self._check_config(config_str, num_steps)
    if state == 'finished':
      return state
    tf.io.gfile.makedirs(self.path)
    if self.chief and state in ('new', 'continued'):
      if state == 'continued':
        self._set_aside_final_metrics()
      files.write_atomic(self.join(CONFIG_FILE), config_str)
    return state

  def finished_metrics(self):
    """final_metrics.json of the model_dir (read by every worker), or None."""
    path = os.path.join(self.model_dir, FINAL_METRICS_FILE)
    if not tf.io.gfile.exists(path):
      return None
    try:
      with tf.io.gfile.GFile(path) as f:
        return json.load(f)
    except ValueError:  # Torn: the run did not finish writing it.
      return None

  def _set_aside_final_metrics(self):
    final = self.finished_metrics()
    if final is not None:
      path = self.join(f'final_metrics.step_{final.get("step", "unknown")}.json')
      tf.io.gfile.rename(self.join(FINAL_METRICS_FILE), path, overwrite=True)

  def _check_config(self, config_str, num_steps):
    path = os.path.join(self.model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
      return 'new'
    with tf.io.gfile.GFile(path) as f:
      old = f.read()
    final = self.finished_metrics()
    if old == config_str:
      return 'finished' if final is not None and final.get('step') == num_steps else 'resumed'
    if _without_num_steps(old) == _without_num_steps(config_str) and num_steps is not None:
      reached = max([final.get('step', 0) if final else 0]
                    + [_checkpoint_step(p) for p in checkpoint_candidates(
                        os.path.join(self.model_dir, CHECKPOINTS))])
      if num_steps < reached:
        raise RunDirError(
            f'{self.model_dir} holds a run that reached step {reached}; it cannot continue to '
            f'train.num_steps = {num_steps} (nothing was changed). Give train.num_steps >= '
            f'{reached}, or use a new --model_dir.')
      if self.chief:
        _LOG.info('Continuing the run in %s from step %d to train.num_steps = %d.',
                  self.model_dir, reached, num_steps)
      return 'continued'
    diff = '\n'.join(difflib.unified_diff(old.splitlines(), config_str.splitlines(),
                                          'in model_dir', 'this command', lineterm='', n=0))
    raise RunDirError(
        f'{self.model_dir} holds a run started with a different gin config, so it cannot be '
        f'resumed with this one (nothing was changed). Use a new --model_dir to start fresh, '
        f'or rerun with the original config (only train.num_steps may change: a run '
        f'continues to more steps). Difference:\n{diff}')

  def checkpoint_manager(self, checkpoint, max_to_keep):
    return tf.train.CheckpointManager(checkpoint, self.join(CHECKPOINTS),
                                      max_to_keep=max_to_keep)

  def read_run_info(self):
    """run_info.json as a dict ({} if absent)."""
    path = self.join(RUN_INFO_FILE)
    if not tf.io.gfile.exists(path):
      return {}
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)

  def write_run_info(self, seed, strategy, start_step, task):
    """Adds this session to run_info.json (replaced atomically) and returns the new contents.

    Top level: seed and versions (``versions()``) of the first session, the task's metadata.
    Each session: start_time, start_step, command (sys.argv), host, strategy, num_replicas and
    code (``provenance.code_version()``: commit, dirty, source, package_version).
    """
    info = self.read_run_info()
    session = {'start_time': datetime.datetime.now().isoformat(timespec='seconds'),
               'start_step': start_step, 'command': sys.argv, 'host': socket.gethostname(),
               'strategy': type(strategy).__name__,
               'num_replicas': strategy.num_replicas_in_sync,
               'code': provenance.code_version()}
    info.setdefault('seed', seed)
    info.setdefault('versions', versions())
    info['task'] = task.metadata()
    info.setdefault('sessions', []).append(session)
    files.write_atomic(self.join(RUN_INFO_FILE), json.dumps(info, indent=2))
    return info

  def write_operative_config(self, writer, step):
    """gin's operative config lists only configurables already called: write it after a
    step (replaced atomically). Also logged as a TensorBoard text summary
    (gin/operative_config)."""
    text = gin.operative_config_str()
    files.write_atomic(self.join(OPERATIVE_CONFIG_FILE), text)
    with writer.as_default(step=step):
      tf.summary.text('gin/operative_config', gin.markdown(text))
    writer.flush()

  def export(self, task, metadata, subdir=None):
    """Exports the task's representation (if it has one) to export/ (or export/<subdir>/).

    Its mi_tf_metadata.json: the task's metadata (task, dataset, noise_std, encoder, ...; the
    task's data gives dataset and noise_std where the metadata lacks them), the run's seed,
    ``code`` (``provenance.code_version()``: commit, dirty, ...) and ``metadata`` (the step).
    """
    exported = task.export_model()
    if exported is None or not self.chief:
      return
    model, input_shape = exported
    path = self.join(EXPORT, subdir) if subdir else self.join(EXPORT)
    out = dict(task.metadata())
    data = getattr(task, 'data', None)
    for name in ('dataset', 'noise_std'):
      if name not in out and hasattr(data, name):
        out[name] = getattr(data, name)
    if 'seed' in (info := self.read_run_info()):
      out['seed'] = info['seed']
    out.update(code=provenance.code_version(), **metadata)
    export_lib.export_encoder(model, path, input_shape, metadata=out)

  def write_final_metrics(self, values):
    with tf.io.gfile.GFile(self.join(FINAL_METRICS_FILE), 'w') as f:
      json.dump(values, f, indent=2, sort_keys=True)
