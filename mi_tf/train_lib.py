"""The training loop: one gin root, ``train(model_dir, task=...)``, for every experiment.

A custom loop under tf.distribute (SimCLR TF2 style): the task's step runs in replica context
inside an inner ``tf.range`` loop of one tf.function call (amortising Python overhead),
evaluation every ``eval_every`` steps including step 0 (before that step's update), TensorBoard
summaries (separate train/ and eval/ writers), ``metrics.jsonl``, checkpoints, exact resume
on rerun (the data stream is a function of the step), a SavedModel export of g1 at the end.

This module decides WHEN things happen (TF-Agents' ``train_eval``, Orbit's actions); what a
step, an evaluation or an export is belongs to the ``Task`` (``mi_tf.tasks``), and what is
written to the model_dir and how belongs to ``mi_tf.run_dir``. gin files are parsed and the
configurables registered by ``mi_tf.launch``.
"""

import contextlib
import datetime
import hashlib
import logging
import signal
import time

import gin
import keras
import numpy as np
import tensorflow as tf

from mi_tf import distribute
from mi_tf import hparams
from mi_tf import metrics_log
from mi_tf import timing
from mi_tf import run_dir as run_dir_lib

_LOG = logging.getLogger(__name__)

NONFINITE_POLICIES = ('stop', 'skip')
# Keras dtype policies train() can run under (train.precision).
PRECISIONS = ('float32', 'mixed_bfloat16')
RunDirError = run_dir_lib.RunDirError


class NonFiniteError(FloatingPointError):
  """Training produced NaN or inf; the last checkpoint holds finite weights."""


@gin.configurable(denylist=['model_dir'])
def train(model_dir, task=gin.REQUIRED, num_steps=20000, batch_size=128, seed=0,
          eval_every=1000, log_every=100, checkpoint_every=1000, max_checkpoints=3,
          export_every_eval=False, distribution='default', tpu=None, deterministic=False,
          nonfinite_policy='stop', worker_dir=None, jit_compile=False, precision='float32'):
  """Trains ``task`` in ``model_dir``; resumes if ``model_dir`` holds a checkpoint.

  Args:
    model_dir: run directory (created; resumed if it holds a run with the same config).
    task: a ``mi_tf.tasks.base.Task`` (gin: ``train.task = @MIMaximization()``).
    num_steps: training steps (paper: 20,000; 60,000 on CIFAR-10).
    batch_size: GLOBAL batch size, split over replicas (paper: 128).
    seed: seeds Python, NumPy, TF and Keras initialisers, the data order and noise.
    eval_every: evaluation period in steps; evaluations at 0, eval_every, ... and num_steps.
    log_every: period of training summaries, metrics and progress lines (a window also ends
      at every evaluation and checkpoint step, so that a resumed run logs the same windows).
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
    precision: the Keras global dtype policy the task's models are built under: 'float32'
      (default) or 'mixed_bfloat16' (opt-in: layers compute in bfloat16, variables, the
      optimizer, the loss and the gradients applied stay float32; the encoders' outputs, the
      critics' scores, log-determinants, logits, probe features and the exported
      representation are float32). The previous global policy is restored when train()
      returns or raises. benchmarks/precision.py measures its speed against float32; on a
      CPU without native bfloat16 arithmetic (AVX512_BF16, AMX) it is not faster.

  Nothing is written to model_dir before everything the config names is built and checked
  (gin's bindings, the task's models and optimizers, the data and every split string): a
  refused command leaves model_dir as it was, or absent. One process trains a model_dir at a
  time: the chief holds the lease ``<model_dir>/.train.lease`` from its first write to its
  end. Rerunning a finished run returns its final_metrics.json, takes no lease and changes
  nothing; a stopped or finished run continues to a larger ``num_steps``, and resumes with its
  data anywhere (``ImageHalves.data_dir`` is not part of the run) but only on the same data
  (dataset, version, split strings and sizes, recorded in run_info.json)
  (``mi_tf.run_dir.RunDir.start``).

  Returns:
    dict of the final evaluation's scalars.
  Raises:
    ValueError: a bad argument, gin binding or split (nothing was written);
      ``RunDirError``: model_dir holds a run of another config or other data;
      ``mi_tf.run_dir.RunInUseError`` (a RunDirError): another live process trains it.
  """
  if precision not in PRECISIONS:
    raise ValueError(f'train.precision must be one of {PRECISIONS}, got {precision!r}.')
  # Layers take the global policy when they are created (task.build): set it for this run
  # only, so that later runs and tests in the same process get the policy they had.
  previous_policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(precision)
  # Undone when train() returns or raises (also SystemExit after SIGTERM), last in first out:
  # the run's lease, then the policy.
  with contextlib.ExitStack() as cleanup:
    cleanup.callback(keras.mixed_precision.set_global_policy, previous_policy)
    return _train(cleanup, model_dir, task, num_steps, batch_size, seed, eval_every,
                  log_every, checkpoint_every, max_checkpoints, export_every_eval,
                  distribution, tpu, deterministic, nonfinite_policy, worker_dir, jit_compile,
                  precision)


def _train(cleanup, model_dir, task, num_steps, batch_size, seed, eval_every, log_every,
           checkpoint_every, max_checkpoints, export_every_eval, distribution, tpu,
           deterministic, nonfinite_policy, worker_dir, jit_compile, precision):
  """``train`` under the run's dtype policy (same arguments, same result); ``cleanup``: the
  contextlib.ExitStack that train() closes when it returns or raises."""
  # Everything the config names is built and checked before the first byte is written to
  # model_dir: a command refused here leaves the model_dir as it was (or absent), so the
  # corrected command then runs.
  _check_arguments(num_steps, batch_size, eval_every, log_every, checkpoint_every,
                   nonfinite_policy)
  _check_gin_config()
  strategy = distribute.make_strategy(distribution, tpu)
  if batch_size % strategy.num_replicas_in_sync:
    raise ValueError(f'batch_size {batch_size} is not divisible by the '
                     f'{strategy.num_replicas_in_sync} replicas of the '
                     f'{type(strategy).__name__}.')
  task.check_inputs()
  tf.keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  step_var, skipped_var = _build(strategy, task, batch_size, seed)
  data = getattr(task, 'data', None)
  run = run_dir_lib.RunDir(model_dir, distribute.is_chief(strategy), worker_dir,
                           distribute.task_info(strategy))
  # The first write: the lease (the chief's), then config.gin and the data's identity.
  state = run.start(gin.config_str(), num_steps,
                    data.identity() if hasattr(data, 'identity') else None)
  if state == 'finished':
    final = run.finished_metrics()
    _LOG.info('%s holds a finished run of %d steps (final_metrics.json): nothing to do, '
              'nothing was changed. Raise train.num_steps to continue it, or use a new '
              '--model_dir.', model_dir, num_steps)
    return final
  cleanup.callback(run.close)

  manager = _restore(task, run, step_var, skipped_var, max_checkpoints)
  start_step = int(step_var.numpy())
  # The data stream is a function of (seed, step): start it where the checkpoint stopped.
  iterator = iter(strategy.distribute_datasets_from_function(
      task.dataset_fn(batch_size, seed, start_step)))
  run.write_run_info(seed, strategy, start_step, task, precision)
  log = metrics_log.MetricsLog(run.path)
  # Records written after the checkpoint are written again.
  wall_before = run_dir_lib.wall_seconds_before(log.truncate_from(start_step), start_step)
  train_loop = _make_train_loop(strategy, task, iterator, step_var, jit_compile,
                                stop_on_nonfinite=nonfinite_policy == 'stop')
  train_writer = tf.summary.create_file_writer(run.join('train'))
  hparams.write_session_start(run, train_writer, task, seed, num_steps, batch_size)
  evaluator = _Evaluator(task, run, log, export_every_eval, nonfinite_policy == 'stop',
                         num_steps)
  clock = _Progress(num_steps, start_step, wall_before, eval_every, evaluator)

  step, final, operative_written = start_step, {}, False
  weights_before = weights_digest(task)  # Did this session change any weight?
  # SIGTERM (a preemption notice) and SIGINT (Ctrl-C) stop the loop at the end of the current
  # call, after a checkpoint; a second SIGINT stops at once (KeyboardInterrupt).
  with _SignalFlag(signal.SIGTERM, signal.SIGINT) as terminate:
    while True:
      if step % eval_every == 0 or step == num_steps:
        final = evaluator(step)
      if step >= num_steps:
        break
      # Every call ends at the next multiple of log_every, eval_every or checkpoint_every (or
      # at num_steps): a run resumes from a checkpoint at such a step, so a resumed run logs
      # the same windows as an uninterrupted one.
      boundary = next_boundary(step, num_steps, log_every, eval_every, checkpoint_every)
      with clock.timed_steps():
        sums, first_bad = train_loop(tf.constant(boundary - step, tf.int64))
        new_step = int(step_var.numpy())
      if int(first_bad[0]) >= 0 and nonfinite_policy == 'stop':
        raise _nonfinite_error(first_bad, manager.latest_checkpoint)
      skipped_var.assign_add((new_step - step) - int(sums['finite']))
      step = new_step
      if not operative_written:
        run.write_operative_config(train_writer, step)
        operative_written = True
      means = clock.log(step, sums, int(skipped_var.numpy()))
      write_summaries(train_writer, step, means)
      log.write(step, 'train', means)
      if (step % checkpoint_every == 0 or step % eval_every == 0 or step == num_steps
          or terminate.signal is not None):
        with clock.timings.timed('checkpoint'):
          manager.save(checkpoint_number=step)
      if terminate.signal is not None:
        _LOG.warning('Received %s: saved a checkpoint at step %d and stopped (exit status %d). '
                     'Rerun the same command to resume.', signal.Signals(terminate.signal).name,
                     step, 128 + terminate.signal)
        raise SystemExit(128 + terminate.signal)
  if terminate.signal is not None:  # During the last evaluation: the run is complete.
    _LOG.warning('Received %s during the last evaluation: every step is done and '
                 'checkpointed, so the run finishes (export, final_metrics.json) instead of '
                 'stopping.', signal.Signals(terminate.signal).name)

  if not operative_written:
    run.write_operative_config(train_writer, step)
  with clock.timings.timed('export'):
    run.export(task, {'step': step, 'seed': seed})
  skipped = int(skipped_var.numpy())
  reasons = degenerate_reasons(
      metrics_log.read(run.path), step, skipped, task.train_objective,
      weights_changed=(None if step == start_step
                       else weights_digest(task) != weights_before))
  final_scalars = dict(scalars(final), step=step, **clock.wall_times(),
                       time=clock.time_split(evaluator), skipped_steps=skipped,
                       status='degenerate' if reasons else 'ok', degenerate_reasons=reasons)
  run.write_final_metrics(final_scalars)
  if reasons:
    _LOG.warning('DEGENERATE RUN: it learned nothing: %s. final_metrics.json records '
                 "status 'degenerate'; its numbers are not a result of the method.",
                 '; '.join(reasons))
  _LOG.info('Finished %d steps in %s; results in %s', step,
            format_duration(final_scalars['wall_seconds_this_session']), model_dir)
  return final_scalars


def _check_arguments(num_steps, batch_size, eval_every, log_every, checkpoint_every,
                     nonfinite_policy):
  """Refuses bad loop arguments with one message, before anything is built or written."""
  if nonfinite_policy not in NONFINITE_POLICIES:
    raise ValueError(f'nonfinite_policy must be one of {NONFINITE_POLICIES}, '
                     f'got {nonfinite_policy!r}.')
  for name, value in (('num_steps', num_steps), ('batch_size', batch_size),
                      ('eval_every', eval_every), ('log_every', log_every),
                      ('checkpoint_every', checkpoint_every)):
    if not isinstance(value, int) or value < (0 if name == 'num_steps' else 1):
      raise ValueError(f'train.{name} must be a positive integer, got {value!r}.')


def next_boundary(step, num_steps, *periods):
  """The first step after ``step`` that is a multiple of one of ``periods``, or num_steps."""
  return min([num_steps] + [(step // p + 1) * p for p in periods])


def remaining_evaluations(step, num_steps, eval_every):
  """Evaluations still to run when the loop is at ``step`` (the one AT step is pending): at
  the multiples of eval_every in [step, num_steps], and at num_steps."""
  if step > num_steps:
    return 0
  count = num_steps // eval_every - (step - 1) // eval_every if step > 0 else (
      num_steps // eval_every + 1)
  return count + (1 if num_steps % eval_every else 0)


def _check_gin_config():
  """gin's checks of the whole config that it would otherwise make only when a configurable
  is called (linear_probe, converged_probe: at the first evaluation, after the run's files
  are written): every macro (%NAME) defined, no unknown reference, no %gin.REQUIRED left.

  The rest is checked earlier or by building: gin refuses unknown configurables and
  parameters of a fixed signature at parse time; the Keras layers (MLP, Bilinear, ...) take
  **kwargs, so their parameter names are checked when task.build constructs them, which
  precedes every write. Raises ValueError (one line).
  """
  config = gin.config._CONFIG  # pylint: disable=protected-access
  macro = gin.config.get_configurable(gin.config.macro)
  for ref in gin.config.iterate_references(config, to=macro):
    if ref.config_key not in config:
      name = ref.scoped_selector.rsplit('/', 1)[0]
      raise ValueError(f'gin config: the macro %{name} is used but never defined (bind it: '
                       f'{name} = <value>).')
  try:
    for hook in (gin.config.validate_macros_hook, gin.config.find_unknown_references_hook,
                 gin.config.find_missing_overrides_hook):
      hook(config)
  except ValueError as e:
    first = str(e).strip().splitlines()[0].split(' in config string')[0].rstrip(':')
    raise ValueError(f'gin config: {first}.') from None


def _build(strategy, task, batch_size, seed):
  """Builds the task (models, optimizers) and the loop's counters under the strategy's
  scope; writes nothing. -> (step, skipped_steps) variables."""
  with strategy.scope():
    task.build(batch_size, seed)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    skipped_var = tf.Variable(0, dtype=tf.int64, trainable=False, name='skipped_steps')
  return step_var, skipped_var


def _restore(task, run, step_var, skipped_var, max_checkpoints):
  """The run's CheckpointManager (its directory under the run's path), after restoring the
  newest readable checkpoint if there is one."""
  checkpoint = tf.train.Checkpoint(step=step_var, skipped_steps=skipped_var,
                                   **task.trackables())
  manager = run.checkpoint_manager(checkpoint, max_checkpoints)
  restored = run_dir_lib.restore_newest(manager, checkpoint)
  if restored:
    _LOG.info('Resumed from %s at step %d.', restored, int(step_var.numpy()))
  return manager


def _make_train_loop(strategy, task, iterator, step_var, jit_compile, stop_on_nonfinite):
  """The inner loop: a tf.function running ``num`` (>= 1) steps of ``task.train_step``.

  It returns the sums over finite steps of the step's outputs (means over replicas), and
  ``first_bad``: (step number, loss, gradient norm) of the first non-finite step, step -1 if
  none; with ``stop_on_nonfinite`` the loop ends there.
  """
  replica_step = task.train_step
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

  return train_loop


def _nonfinite_error(first_bad, latest_checkpoint):
  return NonFiniteError(
      f'Non-finite training step {int(first_bad[0])}: loss = {float(first_bad[1])}, gradient '
      f'norm = {float(first_bad[2])}. The update was not applied and training stopped; '
      + (f'the newest checkpoint, {latest_checkpoint}, holds finite weights. '
         if latest_checkpoint else 'no checkpoint had been written yet. ')
      + "Lower the learning rate, or bind train.nonfinite_policy='skip' to skip such steps.")


# A run "learned nothing" by its objective only with at least this many training log windows
# (a few steps of a tiny test run prove nothing either way).
MIN_OBJECTIVE_WINDOWS = 10


def weights_digest(task):
  """A digest of the values of every trainable weight of the task's models (the Keras layers
  among ``task.trackables()``): equal digests, equal weights."""
  digest = hashlib.sha256()
  for name, obj in sorted(task.trackables().items()):
    if isinstance(obj, keras.layers.Layer):
      for variable in obj.trainable_weights:
        digest.update(name.encode() + b'/' + variable.path.encode())
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
  return digest.hexdigest()


def degenerate_reasons(records, steps, skipped_steps, objective,
                       weights_changed=None, min_windows=MIN_OBJECTIVE_WINDOWS):
  """Why a run that finished ``steps`` steps learned nothing; [] when nothing says so.

  Conservative, one reason per sign: every step was skipped (non-finite, under
  train.nonfinite_policy='skip'); else no trainable weight changed in this session
  (``weights_changed`` False; None: not known, e.g. no step ran); else the training
  ``objective`` (a metric the task minimises, e.g. 'loss'; None: the task has none that must
  fall, e.g. an adversarial game) is not lower in the last training log window than in the
  first, over the windows with a finite step (at least ``min_windows`` of them).

  Args:
    records: the run's metrics.jsonl records (``mi_tf.metrics_log.read``), every session.
  """
  if steps <= 0:
    return []
  if skipped_steps >= steps:
    return [f'all {steps} training steps were skipped (non-finite loss or gradient, '
            "train.nonfinite_policy = 'skip')"]
  reasons = []
  if weights_changed is False:
    reasons.append('no trainable weight changed in this session')
  windows = objective_windows(records, objective) if objective else []
  if len(windows) >= min_windows:
    (first_step, first), (last_step, last) = windows[0], windows[-1]
    if not last < first:
      reasons.append(f'the training {objective} did not fall: {first:.4g} in the first log '
                     f'window (step {first_step}), {last:.4g} in the last (step {last_step})')
  return reasons


def objective_windows(records, metric):
  """[(step, value)] of the training log windows of ``metric`` that had a finite step (a
  window whose steps were all skipped logs 0.0, which is no value), in step order."""
  train = {}
  for r in records:
    if r.get('split') == 'train' and r.get('metric') in (metric, 'skipped_steps'):
      train.setdefault(r['step'], {})[r['metric']] = r['value']
  out, last_step, last_skipped = [], 0, 0
  for step in sorted(train):
    value, skipped = train[step].get(metric), train[step].get('skipped_steps', last_skipped)
    if (value is not None and skipped - last_skipped < step - last_step
        and np.isfinite(value)):
      out.append((step, float(value)))
    last_step, last_skipped = step, skipped
  return out


class _SignalFlag(contextlib.AbstractContextManager):
  """Records a signal (SIGTERM: a preemption notice; SIGINT: Ctrl-C) instead of dying of it,
  so the loop can checkpoint first; ``signal`` is the first number received, or None. A
  second SIGINT raises KeyboardInterrupt at once (no checkpoint). The old handlers come back
  on exit. Outside the main thread (some test runners) no handler can be set: a no-op."""

  def __init__(self, *signums):
    self.signums = signums
    self.signal = None
    self._old = {}

  def __enter__(self):
    for signum in self.signums:
      try:
        self._old[signum] = signal.signal(signum, self._record)
      except ValueError:
        pass
    return self

  def _record(self, signum, frame):  # pylint: disable=unused-argument
    if self.signal is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    if self.signal is None:
      self.signal = signum
      _LOG.warning('Received %s: stopping after this call of the training loop, with a '
                   'checkpoint%s.', signal.Signals(signum).name,
                   ' (Ctrl-C again stops at once, without one)'
                   if signum == signal.SIGINT else '')

  def __exit__(self, *exc):
    for signum, old in self._old.items():
      signal.signal(signum, old)
    return False


class _Progress:
  """The training log's means, speed, wall time over sessions and the progress line, and the
  session's wall-time split (``time_split``).

  steps/s counts only the time spent in training steps (not evaluations, checkpoints or
  summaries); the ETA is the remaining steps at that speed plus the remaining evaluations at
  this session's mean evaluation time.
  """

  def __init__(self, num_steps, start_step, wall_before, eval_every, evaluator):
    self.num_steps = num_steps
    self.eval_every = eval_every
    self.evaluator = evaluator
    self.wall_before = wall_before
    self.run_start = time.time()
    self.last_step = start_step
    self.window_seconds = 0.0  # Training-step seconds since the last log line.
    process_start = timing.process_start_time()
    # Process start to here: imports, gin, data check and load, model build, restore.
    self.startup = None if process_start is None else self.run_start - process_start
    self.timings = timing.Timings()
    self.start_step = start_step
    self.first_call_steps = None

  @contextlib.contextmanager
  def timed_steps(self):
    """Times one call of the training loop; the first (it traces) is timed apart."""
    first = 'train_first_call' not in self.timings.seconds
    start = time.time()
    with self.timings.timed('train_first_call' if first else 'train_steps'):
      yield
    self.window_seconds += time.time() - start

  def time_split(self, evaluator):
    """This session's wall-time split, seconds by part: startup (process start to the loop),
    train_first_call (tracing plus the first log_every steps; train_first_call_steps),
    train_steps (the other steps), checkpoint, export, eval (summed over evaluations, its
    parts eval/<part>) and other (this session's rest: logs, summaries)."""
    out = dict(self.timings.seconds)
    if self.startup is not None:
      out['startup'] = self.startup
    out['train_first_call_steps'] = self.first_call_steps or 0
    out.update(evaluator.time_split())
    session = time.time() - self.run_start
    out['other'] = session - sum(out.get(k, 0.0) for k in (
        'train_first_call', 'train_steps', 'checkpoint', 'export', 'eval'))
    out['num_steps'] = self.last_step - self.start_step
    return out

  def log(self, step, sums, skipped_steps):
    """Means over the window's finite steps, plus skipped_steps, steps_per_second (training
    steps only) and wall_seconds (all sessions, when known); prints the progress line."""
    n_ok = float(sums['finite'])
    means = {k: float(v) / max(n_ok, 1.0) for k, v in sums.items() if k != 'finite'}
    means['skipped_steps'] = skipped_steps
    now = time.time()
    rate = (step - self.last_step) / max(self.window_seconds, 1e-9)
    means['steps_per_second'] = rate
    first = self.first_call_steps is None
    if first:
      self.first_call_steps = step - self.last_step
    if self.wall_before is not None:
      means['wall_seconds'] = self.wall_before + (now - self.run_start)
    estimate = f" I_EST {means['I_EST']:.4f}" if 'I_EST' in means else ''  # Not supervised.
    _LOG.info('step %d/%d (%.1f%%) loss %.4f%s | %.0f steps/s%s | ETA %s',
              step, self.num_steps, 100.0 * step / max(self.num_steps, 1), means['loss'],
              estimate, rate, ' (with tracing)' if first else '', self.eta(step, rate, first))
    self.last_step, self.window_seconds = step, 0.0
    return means

  def eta(self, step, rate, first):
    """'H:MM:SS' to the end: training at ``rate`` plus the remaining evaluations at this
    session's mean evaluation time; after the first window only (it holds the tracing)."""
    if first:
      return 'after the next window'
    train = (self.num_steps - step) / max(rate, 1e-9)
    evals = remaining_evaluations(step, self.num_steps, self.eval_every)
    mean = self.evaluator.mean_seconds()
    if not evals or mean is None:
      return format_duration(train)
    eval_seconds = evals * mean
    return (f'{format_duration(train + eval_seconds)} (steps {format_duration(train)} + '
            f'{evals} evaluation{"s" if evals > 1 else ""} {format_duration(eval_seconds)})')

  def wall_times(self):
    """wall_seconds_this_session, and wall_seconds (all sessions) when it is known."""
    wall = time.time() - self.run_start
    out = {'wall_seconds_this_session': wall}
    if self.wall_before is not None:
      out['wall_seconds'] = self.wall_before + wall
    return out


class _Evaluator:
  """One evaluation: the task's values, checked, logged (eval/ writer, metrics.jsonl, the
  log line) and, if asked, the export of that step."""

  def __init__(self, task, run, log, export_every_eval, stop_on_nonfinite, num_steps):
    self.task, self.run, self.log = task, run, log
    self.num_steps = num_steps
    self.export_every_eval = export_every_eval
    self.stop_on_nonfinite = stop_on_nonfinite
    self.writer = tf.summary.create_file_writer(run.join('eval'))
    self.timings = timing.Timings()  # Summed over this session's evaluations.
    self.count = 0
    self.first_seconds = None

  def time_split(self):
    """{'eval': seconds of all evaluations, 'eval/<part>': each part's, 'eval/count'}."""
    out = {f'eval/{k}': v for k, v in self.timings.seconds.items() if k != 'total'}
    out['eval'] = self.timings.seconds.get('total', 0.0)
    out['eval/count'] = self.count
    return out

  def __call__(self, step):
    start = time.time()
    with self.timings.timed('total'):
      values = self._evaluate(step)
    if self.count == 1:
      self.first_seconds = time.time() - start
    return values

  def mean_seconds(self):
    """Mean seconds of this session's evaluations after the first (which loads the splits
    and, at step 0, fits the converged probe too), or of the first if it is the only one;
    None before any."""
    if not self.count:
      return None
    if self.count == 1:
      return self.timings.seconds['total']
    return (self.timings.seconds['total'] - self.first_seconds) / (self.count - 1)

  def _evaluate(self, step):
    timing.EVAL_TIMINGS.take()  # Parts timed outside an evaluation are not its own.
    start = time.time()
    values = self.task.evaluate(step, final=step == self.num_steps)
    values['eval/seconds'] = time.time() - start
    parts = timing.EVAL_TIMINGS.take()
    self.timings.update(parts)
    self.count += 1
    for name, seconds in parts.items():
      values[f'{timing.TIME_PREFIX}{name}_seconds'] = seconds
    for name, value in scalars(values).items():
      if not np.isfinite(value):
        if name in self.task.finite_metrics and self.stop_on_nonfinite:
          raise NonFiniteError(f'Evaluation at step {step}: {name} is {value}.')
        _LOG.warning('Evaluation at step %d: %s is %s (monitoring only).', step, name, value)
    with self.timings.timed('write'):
      write_summaries(self.writer, step, values)
      self.log.write(step, 'eval', values)
    if self.export_every_eval:
      with self.timings.timed('export'):
        self.run.export(self.task, {'step': step}, subdir=f'step_{step}')
    _LOG.info('eval step %d: %s', step, ', '.join(
        f'{k} {v:.4f}' for k, v in sorted(scalars(values).items())))
    return values


def format_duration(seconds):
  """'H:MM:SS' of a number of seconds (negative: 0)."""
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def write_summaries(writer, step, values):
  """Scalars as TensorBoard scalars, arrays (ndim > 0) as histograms.

  A scalar that a chart cannot show (``hparams.omission``: not finite, or an estimate I_*
  beyond ``hparams.DISPLAY_BOUND_NATS``) is left out: counted in display/omitted_values and
  named once in the text display/omitted (metrics.jsonl keeps it). The first summary of a tag
  in this writer carries its description (``hparams.DESCRIPTIONS``).
  """
  display = hparams.Display.of(writer)
  omitted = {}
  with writer.as_default(step=step):
    for name, value in values.items():
      if isinstance(value, np.ndarray) and value.ndim > 0:
        tf.summary.histogram(name, value, description=display.describe(name))
      elif (reason := hparams.omission(name, value)) is not None:
        omitted[name] = reason
      else:
        tf.summary.scalar(name, value, description=display.describe(name))
    display.write_omitted(step, omitted)
  writer.flush()


def scalars(values):
  """The scalar entries of an evaluation's values (arrays are histograms)."""
  return {k: v for k, v in values.items() if not (isinstance(v, np.ndarray) and v.ndim > 0)}
