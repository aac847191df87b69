"""The training loop: one gin root, ``train(model_dir, ...)``, for every experiment.

A custom loop under tf.distribute (SimCLR TF2 style): the task's step runs in replica context
inside an inner ``tf.range`` loop of one tf.function call (amortising Python overhead),
evaluation every ``eval_every`` steps including step 0 (before that step's update), TensorBoard
summaries (separate train/ and eval/ writers), ``metrics.jsonl``, checkpoints, exact resume
on rerun (the data stream is a function of the step), a SavedModel export of g1 at the end.

Layout of a model_dir (see README.md):
  config.gin            the gin config the run was started with (resume refuses another)
  operative_config.gin  the operative gin config (written after the first step)
  run_info.json         seed, versions, strategy, command line, start times
  metrics.jsonl         {"step", "split", "metric", "value"} per line
  train/, eval/         TensorBoard event files
  checkpoints/          tf.train.CheckpointManager (models, optimizer, step)
  export/               SavedModel of g1 (serving_default: x1 -> representation)
  final_metrics.json    the last evaluation and the wall time (wall_seconds: all sessions;
                        wall_seconds_this_session); present only when finished
"""

import datetime
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf

from mi_tf import distribute
from mi_tf import export as export_lib
from mi_tf import metrics_log
from mi_tf import tasks as tasks_lib

_LOG = logging.getLogger(__name__)

NONFINITE_POLICIES = ('stop', 'skip')
CONFIG_FILE = 'config.gin'
FINAL_METRICS_FILE = 'final_metrics.json'


class RunDirError(ValueError):
  """The model_dir holds a different run; nothing in it was changed."""


class NonFiniteError(FloatingPointError):
  """Training produced NaN or inf; the last checkpoint holds finite weights."""


def _versions():
  import gin as gin_mod  # pylint: disable=reimported
  import keras
  import sklearn
  import tensorflow_datasets as tfds
  import tensorflow_probability as tfp
  return {'python': sys.version.split()[0], 'tensorflow': tf.__version__,
          'keras': keras.__version__, 'tensorflow_probability': tfp.__version__,
          'tensorflow_datasets': tfds.__version__, 'gin': getattr(gin_mod, '__version__', '?'),
          'scikit-learn': sklearn.__version__, 'numpy': np.__version__}


def _check_run_dir(model_dir, config_str):
  """Refuses to resume into a model_dir started with another gin config."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return False
  with tf.io.gfile.GFile(path) as f:
    old = f.read()
  if old != config_str:
    import difflib  # pylint: disable=g-import-not-at-top
    diff = '\n'.join(difflib.unified_diff(old.splitlines(), config_str.splitlines(),
                                          'in model_dir', 'this command', lineterm='', n=0))
    raise RunDirError(
        f'{model_dir} holds a run started with a different gin config, so it cannot be '
        f'resumed with this one (nothing was changed). Use a new --model_dir to start fresh, '
        f'or rerun with the original config. Difference:\n{diff}')
  return True


def _checkpoint_candidates(manager):
  """Checkpoint prefixes in the manager's directory, newest step first.

  Read from the files themselves (ckpt-<step>.index), not only from the manager's state file,
  which may be stale or lost when a process is killed while writing it.
  """
  prefixes = {p[:-len('.index')] for p in tf.io.gfile.glob(
      os.path.join(manager.directory, 'ckpt-*.index'))}
  if manager.latest_checkpoint:
    prefixes.add(manager.latest_checkpoint)

  def _number(prefix):
    try:
      return int(prefix.rsplit('-', 1)[1])
    except ValueError:
      return -1

  return sorted(prefixes, key=_number, reverse=True)


def _restore(manager, checkpoint):
  """Restores the newest readable checkpoint; falls back to older ones with a warning."""
  candidates = _checkpoint_candidates(manager)
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


def _wall_seconds_before(records, start_step):
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


def _format_eta(seconds):
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def _write_summaries(writer, step, values):
  with writer.as_default(step=step):
    for name, value in values.items():
      if isinstance(value, np.ndarray) and value.ndim > 0:
        tf.summary.histogram(name, value)
      else:
        tf.summary.scalar(name, value)
  writer.flush()


def _scalars(values):
  return {k: v for k, v in values.items() if not (isinstance(v, np.ndarray) and v.ndim > 0)}


@gin.configurable(denylist=['model_dir'])
def train(model_dir, task=gin.REQUIRED, num_steps=20000, batch_size=128, seed=0,
          eval_every=1000, log_every=100, checkpoint_every=1000, max_checkpoints=3,
          export_every_eval=False, distribution='default', tpu=None, deterministic=False,
          nonfinite_policy='stop', worker_dir=None, jit_compile=False):
  """Trains ``task`` in ``model_dir``; resumes if ``model_dir`` holds a checkpoint.

  Args:
    model_dir: run directory (created; resumed if it holds a run with the same config).
    task: a ``mi_tf.tasks.Task`` (gin: ``train.task = @MIMaximization()``).
    num_steps: training steps (paper: 20,000; 60,000 on CIFAR-10).
    batch_size: GLOBAL batch size, split over replicas (paper: 128).
    seed: seeds Python, NumPy, TF and Keras initialisers, the data order and noise.
    eval_every: evaluation period in steps; evaluations at 0, eval_every, ... and num_steps.
    log_every: period of training summaries, metrics and progress lines; divides eval_every
      and checkpoint_every.
    checkpoint_every: checkpoint period (also at every evaluation, on SIGTERM and at the end).
    max_checkpoints: checkpoints kept.
    export_every_eval: also export g1 to export/step_<k>/ at every evaluation.
    distribution: 'default', 'mirrored', 'multi_worker' or 'tpu' (mi_tf.distribute).
    tpu: TPU name or address (implies distribution='tpu').
    deterministic: enable TF op determinism (bitwise reproducible runs; slower).
    nonfinite_policy: 'stop' raises NonFiniteError at the first step with a NaN/inf loss or
      gradient norm, before anything more is saved; 'skip' applies a zero gradient at such
      steps and counts them (train/skipped_steps), and logs non-finite evaluation values
      instead of stopping. Weights never become NaN.
    worker_dir: scratch directory of non-chief workers under multi-worker training (they
      write their summaries and checkpoints to <worker_dir>/<type>_<id>; default: a new
      temporary directory). Only the chief writes to model_dir.
    jit_compile: compile the task's training step (model, loss, gradients, optimizer update)
      with XLA (``tf.function(jit_compile=True)``); the input iterator and the inner loop stay
      outside. Opt-in (default False): it measurably speeds up some models on CPU (the RealNVP;
      see BENCHMARKS.md) and slows others; results agree to float32 rounding, not bitwise.

  Returns:
    dict of the final evaluation's scalars.
  """
  if nonfinite_policy not in NONFINITE_POLICIES:
    raise ValueError(f'nonfinite_policy must be one of {NONFINITE_POLICIES}, '
                     f'got {nonfinite_policy!r}.')
  for name, value in (('num_steps', num_steps), ('batch_size', batch_size),
                      ('eval_every', eval_every), ('log_every', log_every),
                      ('checkpoint_every', checkpoint_every)):
    if not isinstance(value, int) or value < (0 if name == 'num_steps' else 1):
      raise ValueError(f'train.{name} must be a positive integer, got {value!r}.')
  if eval_every % log_every or checkpoint_every % log_every:
    raise ValueError(f'train.log_every ({log_every}) must divide train.eval_every '
                     f'({eval_every}) and train.checkpoint_every ({checkpoint_every}), so '
                     'that resumed runs log the same windows.')
  strategy = distribute.make_strategy(distribution, tpu)
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(f'batch_size {batch_size} is not divisible by the {replicas} replicas '
                     f'of the {type(strategy).__name__}.')
  task.check_inputs()

  config_str = gin.config_str()
  chief = distribute.is_chief(strategy)
  if chief:
    write_dir = model_dir
  else:  # Non-chief workers take part in every collective but write to scratch space.
    task_type, task_id = distribute.task_info(strategy)
    write_dir = os.path.join(worker_dir or tempfile.mkdtemp(prefix='mi_tf_worker_'),
                             f'{task_type}_{task_id}')
  resuming = _check_run_dir(model_dir, config_str) if chief else False
  tf.io.gfile.makedirs(write_dir)
  if chief and not resuming:
    with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE), 'w') as f:
      f.write(config_str)

  tf.keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()

  with strategy.scope():
    task.build(batch_size, seed)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    skipped_var = tf.Variable(0, dtype=tf.int64, trainable=False, name='skipped_steps')
  checkpoint = tf.train.Checkpoint(step=step_var, skipped_steps=skipped_var,
                                   **task.trackables())
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, 'checkpoints'),
                                       max_to_keep=max_checkpoints)
  restored = _restore(manager, checkpoint)
  start_step = int(step_var.numpy())
  if restored:
    _LOG.info('Resumed from %s at step %d.', restored, start_step)
  # The data stream is a function of (seed, step): start it where the checkpoint stopped.
  iterator = iter(strategy.distribute_datasets_from_function(
      task.dataset_fn(batch_size, seed, start_step)))

  _write_run_info(write_dir, seed, strategy, start_step, task)
  log = metrics_log.MetricsLog(write_dir)
  # Records written after the checkpoint are written again.
  wall_before = _wall_seconds_before(log.truncate_from(start_step), start_step)
  train_writer = tf.summary.create_file_writer(os.path.join(write_dir, 'train'))
  eval_writer = tf.summary.create_file_writer(os.path.join(write_dir, 'eval'))

  stop_on_nonfinite = nonfinite_policy == 'stop'

  def replica_step(batch):
    return task.train_step(batch)

  if jit_compile:
    replica_step = tf.function(replica_step, jit_compile=True)

  def reduced_step():
    out = strategy.run(replica_step, args=(next(iterator),))
    out = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
           for k, v in out.items()}
    step_var.assign_add(1)
    return out

  @tf.function
  def train_loop(num):
    """Runs ``num`` (>= 1) steps; returns sums over finite steps, and the first bad step.

    first_bad is (step number, loss, gradient norm) of the first non-finite step, step -1 if
    none; under the 'stop' policy the loop ends there.
    """
    out = reduced_step()
    ok = out['finite'] > 0
    sums = {k: tf.where(ok, v, 0.0) for k, v in out.items()}
    nan = tf.constant(float('nan'))
    first_bad = (tf.where(ok, tf.constant(-1, tf.int64), step_var.read_value() - 1),
                 tf.where(ok, nan, out['loss']), tf.where(ok, nan, out.get('grad_norm', nan)))
    for _ in tf.range(num - 1):
      if stop_on_nonfinite and first_bad[0] >= 0:
        break
      out = reduced_step()
      ok = out['finite'] > 0
      sums = {k: sums[k] + tf.where(ok, v, 0.0) for k, v in out.items()}
      if first_bad[0] < 0 and not ok:
        first_bad = (step_var.read_value() - 1, out['loss'], out.get('grad_norm', nan))
    return sums, first_bad

  terminate = {'signal': None}

  def _on_sigterm(signum, frame):  # pylint: disable=unused-argument
    terminate['signal'] = signum

  old_handler = None
  try:
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
  except ValueError:  # Not in the main thread (e.g. some test runners): no handler.
    pass

  run_start = time.time()
  step = start_step
  last_log_time, last_log_step = time.time(), step
  final = {}
  operative_written = False
  try:
    while True:
      if step % eval_every == 0 or step == num_steps:
        final = _evaluate(task, step, eval_writer, log, write_dir, export_every_eval, chief,
                          stop_on_nonfinite)
        _LOG.info('eval step %d: %s', step, ', '.join(
            f'{k} {v:.4f}' for k, v in sorted(_scalars(final).items())))
      if step >= num_steps:
        break
      # Every call ends on a multiple of log_every (which divides eval_every and
      # checkpoint_every), so a resumed run logs the same windows as an uninterrupted one.
      boundary = min(num_steps, (step // log_every + 1) * log_every)
      sums, first_bad = train_loop(tf.constant(boundary - step, tf.int64))
      new_step = int(step_var.numpy())
      bad_step = int(first_bad[0])
      n_ok = float(sums['finite'])
      if bad_step >= 0 and stop_on_nonfinite:
        latest = manager.latest_checkpoint
        raise NonFiniteError(
            f'Non-finite training step {bad_step}: loss = {float(first_bad[1])}, gradient '
            f'norm = {float(first_bad[2])}. The update was not applied and training stopped; '
            + (f'the newest checkpoint, {latest}, holds finite weights. ' if latest else
               'no checkpoint had been written yet. ')
            + "Lower the learning rate, or bind train.nonfinite_policy='skip' to skip such "
            'steps.')
      skipped_var.assign_add((new_step - step) - int(n_ok))
      step = new_step
      if not operative_written:
        _write_operative_config(write_dir, train_writer, step)
        operative_written = True
      means = {k: float(v) / max(n_ok, 1.0) for k, v in sums.items() if k != 'finite'}
      means['skipped_steps'] = int(skipped_var.numpy())
      now = time.time()
      means['steps_per_second'] = (step - last_log_step) / max(now - last_log_time, 1e-9)
      if wall_before is not None:
        means['wall_seconds'] = wall_before + (now - run_start)
      _write_summaries(train_writer, step, means)
      log.write(step, 'train', means)
      eta = (num_steps - step) / max(means['steps_per_second'], 1e-9)
      estimate = f" I_EST {means['I_EST']:.4f}" if 'I_EST' in means else ''  # Not supervised.
      _LOG.info('step %d/%d (%.1f%%) loss %.4f%s | %.0f steps/s | ETA %s',
                step, num_steps, 100.0 * step / max(num_steps, 1), means['loss'], estimate,
                means['steps_per_second'], _format_eta(eta))
      last_log_time, last_log_step = now, step
      if (step % checkpoint_every == 0 or step % eval_every == 0 or step == num_steps
          or terminate['signal'] is not None):
        manager.save(checkpoint_number=step)
      if terminate['signal'] is not None:
        _LOG.warning('Received signal %d: saved a checkpoint at step %d and stopped. Rerun '
                     'the same command to resume.', terminate['signal'], step)
        raise SystemExit(128 + terminate['signal'])
  finally:
    if old_handler is not None:
      signal.signal(signal.SIGTERM, old_handler)

  if not operative_written:
    _write_operative_config(write_dir, train_writer, step)
  exported = task.export_model()
  if exported is not None and chief:
    model, input_shape = exported
    export_lib.export_encoder(model, os.path.join(write_dir, 'export'), input_shape,
                              metadata=dict(task.metadata(), step=step, seed=seed))
  wall = time.time() - run_start
  final_scalars = dict(_scalars(final), step=step, wall_seconds_this_session=wall)
  if wall_before is not None:
    final_scalars['wall_seconds'] = wall_before + wall
  with tf.io.gfile.GFile(os.path.join(write_dir, FINAL_METRICS_FILE), 'w') as f:
    json.dump(final_scalars, f, indent=2, sort_keys=True)
  _LOG.info('Finished %d steps in %s; results in %s', step, _format_eta(wall), model_dir)
  return final_scalars


def _evaluate(task, step, writer, log, write_dir, export_every_eval, chief, stop_on_nonfinite):
  start = time.time()
  values = task.evaluate(step)
  values['eval/seconds'] = time.time() - start
  for name, value in _scalars(values).items():
    if not np.isfinite(value):
      if name in task.finite_metrics and stop_on_nonfinite:
        raise NonFiniteError(f'Evaluation at step {step}: {name} is {value}.')
      _LOG.warning('Evaluation at step %d: %s is %s (monitoring only).', step, name, value)
  _write_summaries(writer, step, values)
  log.write(step, 'eval', values)
  if export_every_eval and chief:
    exported = task.export_model()
    if exported is not None:
      export_lib.export_encoder(exported[0], os.path.join(write_dir, 'export', f'step_{step}'),
                                exported[1], metadata=dict(task.metadata(), step=step))
  return values


def _write_operative_config(write_dir, writer, step):
  """gin's operative config lists only configurables already called: write it after a step."""
  text = gin.operative_config_str()
  with tf.io.gfile.GFile(os.path.join(write_dir, 'operative_config.gin'), 'w') as f:
    f.write(text)
  with writer.as_default(step=step):
    tf.summary.text('gin/operative_config', gin.markdown(text))
  writer.flush()


def _write_run_info(write_dir, seed, strategy, start_step, task):
  path = os.path.join(write_dir, 'run_info.json')
  info = {}
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      info = json.load(f)
  session = {'start_time': datetime.datetime.now().isoformat(timespec='seconds'),
             'start_step': start_step, 'command': sys.argv, 'host': socket.gethostname(),
             'strategy': type(strategy).__name__,
             'num_replicas': strategy.num_replicas_in_sync}
  info.setdefault('seed', seed)
  info.setdefault('versions', _versions())
  info['task'] = task.metadata()
  info.setdefault('sessions', []).append(session)
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(info, f, indent=2)


_SEARCH_PATHS = set()


def parse_gin(gin_files=(), gin_bindings=()):
  """Clears gin, then parses gin files (their folders on the search path) and bindings.

  Unknown configurables or parameters, and missing files, raise here.
  """
  from mi_tf import configurables  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  missing = [f for f in gin_files if not tf.io.gfile.exists(f)]
  if missing:
    raise FileNotFoundError(f'gin file(s) not found: {missing}')
  gin.clear_config()
  for path in gin_files:  # So that `include 'mnist_protocol.gin'` finds its neighbour.
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in _SEARCH_PATHS:
      gin.add_config_file_search_path(directory)
      _SEARCH_PATHS.add(directory)
  # gin logs an ERROR for each include it finds only on the search path: hide that noise.
  gin_logger = logging.getLogger()
  level = gin_logger.level
  gin_logger.setLevel(logging.CRITICAL)
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings),
                                        finalize_config=False)
  finally:
    gin_logger.setLevel(level)


def train_with_gin(model_dir, gin_files=(), gin_bindings=(), **train_kwargs):
  """Parses gin files and bindings, runs ``train(model_dir, ...)``, clears the config.

  Unknown configurables or parameters, and missing files, raise before anything is written.
  """
  try:
    parse_gin(gin_files, gin_bindings)
    return train(model_dir, **train_kwargs)
  finally:
    gin.clear_config()
