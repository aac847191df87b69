"""One model_dir on disk: what a run writes besides its TensorBoard events and metrics.

Layout (README.md, "Layout of a model_dir"):
  config.gin            the gin config the run was started with (a resume must match it)
  operative_config.gin  the operative gin config (written after the first step)
  run_info.json         seed, versions, task, the data's identity (dataset, version, splits),
                        and one entry per session (start step, command, host, strategy,
                        replicas)
  .train.lease          the lease of the process training the run (only while it trains)
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
import socket
import sys
import tempfile
import time

import gin
import tensorflow as tf

from mi_tf import export as export_lib
from mi_tf import files
from mi_tf import jsonl
from mi_tf import leases
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


class RunInUseError(RunDirError):
  """Another live process writes the model_dir; nothing in it was changed."""


# The lease of the one process that writes a model_dir (``mi_tf.leases``; the runner's own is
# .runner.lease): taken before the first write, renewed while training, released at the end.
TRAIN_LEASE_FILE = leases.TRAIN_LEASE_FILE
# run_info.json's record of what the data is (``ImageHalves.identity``): a resume must match.
DATA_KEY = 'data'


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
  return sorted(prefixes, key=lambda p: _checkpoint_step(p, unknown=-1), reverse=True)


def _checkpoint_files(prefix):
  """The names of a checkpoint's files (ckpt-4.data-00000-of-00001, ckpt-4.index), for
  messages; '(no files)' if there are none."""
  names = sorted(os.path.basename(p) for p in tf.io.gfile.glob(prefix + '.*'))
  return ', '.join(names) or '(no files)'


def _read_every_tensor(prefix):
  """Reads every tensor of the checkpoint at ``prefix``; raises if any file is damaged.

  Done before ``Checkpoint.restore``, which may assign some variables and then fail: a
  damaged checkpoint is found here, before any variable was touched."""
  reader = tf.train.load_checkpoint(prefix)
  for name in reader.get_variable_to_shape_map():
    reader.get_tensor(name)


def restore_newest(manager, checkpoint):
  """Restores the newest readable checkpoint; falls back to older ones with a warning.

  A checkpoint is tried by reading every tensor of it first (``_read_every_tensor``), then
  restoring it; any failure (a truncated or garbled .data or .index file, a missing file)
  makes it fall back to the next older one, with a warning naming the checkpoint's files. The
  one restored gives every variable its value (the variables of a checkpoint that failed are
  assigned again).

  Returns:
    The restored prefix, or None if there is no checkpoint (a new run).
  Raises:
    RuntimeError: there are checkpoints, but none is readable (naming the directory and each
      checkpoint's files and error).
  """
  candidates = checkpoint_candidates(manager.directory, manager.latest_checkpoint)
  failures = []
  for path in candidates:
    try:
      _read_every_tensor(path)
      checkpoint.restore(path).assert_existing_objects_matched()
    # Broad on purpose: damage shows as many exception types (tf.errors.DataLossError or
    # NotFoundError, IndexError "Read less bytes than requested" from a truncated .data file,
    # ValueError, AssertionError for a checkpoint of other objects...), and each means the
    # same: this checkpoint cannot be used, the older one may.
    except Exception as e:  # pylint: disable=broad-except
      reason = f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:200]}'
      failures.append(f'{os.path.basename(path)} ({_checkpoint_files(path)}): {reason}')
      _LOG.warning('Checkpoint %s cannot be read (files: %s; %s); trying the previous one.',
                   path, _checkpoint_files(path), reason)
      continue
    if failures:
      _LOG.warning('Resumed from the older checkpoint %s: the newer %s could not be read.',
                   path, 'one' if len(failures) == 1 else f'{len(failures)}')
    return path
  if candidates:
    raise RuntimeError(
        f'No readable checkpoint in {manager.directory}: ' + '; '.join(failures)
        + '. Put back an intact copy of the checkpoints, or move the directory away to start '
        'fresh.')
  return None


STATE_FILE = 'checkpoint'  # tf.train.CheckpointManager's list of its checkpoints.


def repair_checkpoint_state(directory):
  """Rewrites the checkpoint manager's state file (``checkpoint``) from the checkpoint files
  when it is missing, empty or unparsable while checkpoints exist (a disk or copy that lost
  it). With it damaged, tf.train.CheckpointManager fails to start (an empty file) or forgets
  the older checkpoints (and never deletes them). Replaced atomically; logs a warning.

  Returns:
    True if the file was rewritten.
  """
  prefixes = checkpoint_candidates(directory)[::-1]  # Oldest first, as the manager lists them.
  if not prefixes:
    return False
  try:
    state = tf.train.get_checkpoint_state(directory)
  # Broad on purpose: an empty file raises ValueError, a garbled one may raise ParseError
  # (logged and returned as None by TensorFlow) or UnicodeDecodeError.
  except Exception:  # pylint: disable=broad-except
    state = None
  if state is not None and state.model_checkpoint_path:
    return False
  stamps = [tf.io.gfile.stat(p + '.index').mtime_nsec / 1e9 for p in prefixes]
  names = [os.path.basename(p) for p in prefixes]
  lines = ([f'model_checkpoint_path: {json.dumps(names[-1])}']
           + [f'all_model_checkpoint_paths: {json.dumps(n)}' for n in names]
           + [f'all_model_checkpoint_timestamps: {t!r}' for t in stamps]
           + [f'last_preserved_timestamp: {min(stamps) - 1.0!r}'])
  path = os.path.join(directory, STATE_FILE)
  _LOG.warning('The checkpoint state file %s is missing or unreadable; rewrote it from the '
               'checkpoint files (%s).', path, ', '.join(names))
  files.write_atomic(path, '\n'.join(lines) + '\n')
  return True


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


def _is_data_dir(key):
  return key.split('/')[-1].split('.')[-2:] == ['ImageHalves', 'data_dir']


def _without_num_steps(config_str, num_steps=True):
  """A gin config string as a run's identity: its binding statements (a value continued over
  several lines is one statement), without gin's comments and blank lines, without
  ``ImageHalves.data_dir`` (where the data lives is not what the run is: the data's identity
  is in run_info.json) and, if ``num_steps``, without ``train.num_steps`` (the one change a run
  can take: it continues to another length)."""
  statements = []
  for line in config_str.splitlines():
    if not line.strip() or line.lstrip().startswith('#'):
      continue
    if line[0].isspace() and statements:
      statements[-1] += '\n' + line
    else:
      statements.append(line)
  keys = [s.split('=', 1)[0].strip() for s in statements]
  return [s for s, key in zip(statements, keys)
          if not _is_data_dir(key) and not (num_steps and key == 'train.num_steps')]


def _flat(record, prefix=''):
  """{'a.b': leaf} of a nested dict."""
  out = {}
  for key, value in record.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _checkpoint_step(prefix, unknown=0):
  """The step of a checkpoint prefix ``.../ckpt-<step>``; ``unknown`` if it has none."""
  try:
    return int(prefix.rsplit('-', 1)[1])
  except (ValueError, IndexError):
    return unknown


class RunDir:
  """The files of one run, as written by one process.

  ``path`` is where this process writes: the model_dir on the chief, a scratch directory
  ``<worker_dir>/<type>_<index>`` on the other workers of a multi-worker run (they take part
  in every collective but must not write to the model_dir, so only the chief checks the
  config, exports and owns the run).
  """

  def __init__(self, model_dir, chief=True, worker_dir=None, task_info=('chief', 0),
               lease_ttl=leases.DEFAULT_TTL):
    self.model_dir = model_dir
    self.chief = chief
    self.lease_ttl = float(lease_ttl)
    self._lease = None  # The chief's leases.Holder of TRAIN_LEASE_FILE, from start() on.
    if chief:
      self.path = model_dir
    else:
      task_type, task_id = task_info
      self.path = os.path.join(worker_dir or tempfile.mkdtemp(prefix='mi_tf_worker_'),
                               f'{task_type}_{task_id}')

  def join(self, *names):
    return os.path.join(self.path, *names)

  def start(self, config_str, num_steps=None, data=None):
    """Checks a model_dir that holds a run, then (the chief) takes the run's lease and writes
    config.gin for a new or continued run, and the data's identity for a new one.

    Everything that can refuse the command is checked before anything is written:

    - a model_dir of another gin config is refused (``RunDirError``), except for
      ``train.num_steps``: a run stopped or finished at step s continues to any
      ``num_steps >= s`` (its config.gin is rewritten with the new value, and the
      final_metrics.json of a finished run is kept as ``final_metrics.step_<s>.json``), and
      for ``ImageHalves.data_dir``, where the data lives (it alone rewrites nothing);
    - ``data`` (``ImageHalves.identity()``: dataset, version, split strings and sizes; None
      for a task without such data) must equal the one run_info.json recorded when the run
      began (``RunDirError`` otherwise; a run that recorded none records it now);
    - one process writes a model_dir: the chief takes the lease ``.train.lease``
      (``mi_tf.leases``: atomic create, renewed from a thread, broken with a warning when its
      owner is gone or did not renew it for ``lease_ttl`` seconds), or, if a live process
      holds it, raises ``RunInUseError`` naming that process and its host. ``close()``
      releases it. Other workers of a multi-worker run take none.

    A run that already finished ``num_steps`` steps is left untouched, and no lease is taken.

    Returns:
      'new', 'resumed' (same config), 'continued' (another num_steps) or 'finished' (nothing
      to do; nothing was written).
    """
    state = self._check_config(config_str, num_steps)
    if state == 'finished':
      return state
    if self.chief:
      self._check_data(data)
      self._take_lease()
    try:
      if self.chief:  # Under the lease: another process may have changed the run meanwhile.
        state = self._check_config(config_str, num_steps, log=False)
        self._check_data(data)
        if state == 'finished':
          self.close()
          return state
      tf.io.gfile.makedirs(self.path)
      if self.chief and state in ('new', 'continued'):
        if state == 'continued':
          self._set_aside_final_metrics()
        files.write_atomic(self.join(CONFIG_FILE), config_str)
      if self.chief and data is not None and DATA_KEY not in (info := self.read_run_info()):
        info[DATA_KEY] = data
        jsonl.write_json(self.join(RUN_INFO_FILE), info)
    except BaseException:
      self.close()
      raise
    return state

  def _take_lease(self):
    """Takes TRAIN_LEASE_FILE in model_dir (the first file a new run writes)."""
    seen = leases.read(self.model_dir, TRAIN_LEASE_FILE)
    holder = leases.Holder(ttl=self.lease_ttl, name=TRAIN_LEASE_FILE,
                           owner=f'train:{socket.gethostname()}:{os.getpid()}:{id(self):x}')
    for _ in range(2):  # Once more if the owner seen released it in between.
      if holder.acquire(self.model_dir):
        break
      seen = leases.read(self.model_dir, TRAIN_LEASE_FILE)
      if seen is not None:
        holder.close()
        age = time.time() - float(seen.get('renewed', 0))
        raise RunInUseError(
            f'{self.model_dir} is in use: process {seen.get("pid")} on host '
            f'{seen.get("host")} trains it (its lease {TRAIN_LEASE_FILE} was renewed '
            f'{age:.0f} s ago; nothing was changed). One process writes a run directory: '
            'wait for that one to end, or stop it. The lease of a process that died is '
            f'broken at the next start: at once on the same host, after {self.lease_ttl:.0f} '
            's without renewal from another host.')
    else:
      holder.close()
      raise RunInUseError(f'{self.model_dir}: could not take its lease {TRAIN_LEASE_FILE} '
                          '(another process took and released it twice meanwhile); rerun.')
    self._lease = holder
    if seen is not None and leases.is_stale(seen, self.lease_ttl):
      age = time.time() - float(seen.get('renewed', 0))
      _LOG.warning('Broke the stale lease %s of process %s on host %s (renewed %.0f s ago; '
                   'it ended without releasing %s).', TRAIN_LEASE_FILE, seen.get('pid'),
                   seen.get('host'), age, self.model_dir)

  def close(self):
    """Releases the run's lease, if this process holds it (idempotent)."""
    if self._lease is not None:
      self._lease.close()
      self._lease = None

  def _check_data(self, data):
    """Refuses data whose identity differs from the one the run recorded (chief only)."""
    recorded = self.read_run_info().get(DATA_KEY) if data is not None else None
    if recorded is None or recorded == data:
      return
    was, now = _flat(recorded), _flat(data)
    changes = '; '.join(f'{key}: {was.get(key, "(none)")!r} -> {now.get(key, "(none)")!r}'
                        for key in sorted(set(was) | set(now)) if was.get(key) != now.get(key))
    raise RunDirError(
        f'{self.model_dir} holds a run on other data, so it cannot be resumed with this data '
        f'(nothing was changed): {changes} (run_info.json "{DATA_KEY}" -> this command). '
        'Where the data lives may change (--data_dir); what it is may not: point --data_dir '
        'at a copy of the run\'s data, or use a new --model_dir.')

  def finished_metrics(self):
    """final_metrics.json of the model_dir (read by every worker) as a dict, or None if it is
    missing or not a JSON object (a file that a tool other than this package damaged: this
    package replaces it atomically)."""
    final = jsonl.read_json(os.path.join(self.model_dir, FINAL_METRICS_FILE))
    return final if isinstance(final, dict) else None

  def _set_aside_final_metrics(self):
    final = self.finished_metrics()
    if final is not None:
      path = self.join(f'final_metrics.step_{final.get("step", "unknown")}.json')
      tf.io.gfile.rename(self.join(FINAL_METRICS_FILE), path, overwrite=True)

  def _check_config(self, config_str, num_steps, log=True):
    path = os.path.join(self.model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
      return 'new'
    with tf.io.gfile.GFile(path) as f:
      old = f.read()
    final = self.finished_metrics()
    if _without_num_steps(old, False) == _without_num_steps(config_str, False):
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
      if self.chief and log:
        _LOG.info('Continuing the run in %s from step %d to train.num_steps = %d.',
                  self.model_dir, reached, num_steps)
      return 'continued'
    diff = '\n'.join(difflib.unified_diff(
        '\n'.join(_without_num_steps(old, False)).splitlines(),
        '\n'.join(_without_num_steps(config_str, False)).splitlines(),
        'in model_dir', 'this command', lineterm='', n=0))
    raise RunDirError(
        f'{self.model_dir} holds a run started with a different gin config, so it cannot be '
        f'resumed with this one (nothing was changed). Use a new --model_dir to start fresh, '
        f'or rerun with the original config (only train.num_steps may change: a run '
        f'continues to more steps). Difference:\n{diff}')

  def checkpoint_manager(self, checkpoint, max_to_keep):
    """The session's tf.train.CheckpointManager of checkpoints/. A session starts here (after
    ``start``): what a killed process left half-written is put right first, the manager's
    state file (``repair_checkpoint_state``) and, on the chief, the export (``recover``)."""
    repair_checkpoint_state(self.join(CHECKPOINTS))
    self.recover()
    return tf.train.CheckpointManager(checkpoint, self.join(CHECKPOINTS),
                                      max_to_keep=max_to_keep)

  def read_run_info(self):
    """run_info.json as a dict ({} if absent)."""
    path = self.join(RUN_INFO_FILE)
    if not tf.io.gfile.exists(path):
      return {}
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)

  def write_run_info(self, seed, strategy, start_step, task, precision='float32'):
    """Adds this session to run_info.json (replaced atomically) and returns the new contents.

    Top level: seed and versions (``versions()``) of the first session, the task's metadata.
    Each session: start_time, start_step, command (sys.argv), host, strategy, num_replicas,
    precision (``train.precision``: the Keras dtype policy it trained under) and code
    (``provenance.code_version()``: commit, dirty, source, package_version).
    """
    info = self.read_run_info()
    session = {'start_time': datetime.datetime.now().isoformat(timespec='seconds'),
               'start_step': start_step, 'command': sys.argv, 'host': socket.gethostname(),
               'strategy': type(strategy).__name__,
               'num_replicas': strategy.num_replicas_in_sync, 'precision': precision,
               'code': provenance.code_version()}
    info.setdefault('seed', seed)
    info.setdefault('versions', versions())
    info['task'] = task.metadata()
    info.setdefault('sessions', []).append(session)
    jsonl.write_json(self.join(RUN_INFO_FILE), info)
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
    """Writes final_metrics.json (replaced atomically; strict JSON: a non-finite value is the
    string 'nan', 'inf' or '-inf', ``jsonl.dumps_strict``). Written last: it marks the run
    finished."""
    jsonl.write_json(self.join(FINAL_METRICS_FILE), values, sort_keys=True)

  def recover(self):
    """On the chief, completes or undoes an export that a killed process left half-replaced
    (``mi_tf.export.recover``: export/ missing, its complete copy beside it), with a warning.
    Called when a session starts (``checkpoint_manager``), before anything reads export/.

    Returns:
      list of str: what was done.
    """
    if not self.chief:
      return []
    done = export_lib.recover(self.join(EXPORT))
    if done:
      _LOG.warning('Recovered an interrupted export in %s: %s.', self.model_dir,
                   '; '.join(done))
    return done
