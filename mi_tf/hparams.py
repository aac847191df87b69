"""What a run shows in TensorBoard besides its curves, so that ``tensorboard --logdir RUNS_DIR``
compares runs: the HParams tab, the run information text and the display of its scalars.

Sections:
  HParams: once per session, ``hp.hparams`` in an events file at the root of the model_dir
    (``write_session_start``). The HParams plugin makes every run directory holding such a
    session start a "session" (one row of its table) and takes as its metrics the scalars of
    the runs below it: the columns are (tag, group) pairs, group 'train' or 'eval', e.g.
    (``probe/test_accuracy``, eval) and (``loss``, train), valued at their last step. No
    experiment-level ``hp.hparams_config`` is written: the plugin builds the hyperparameter
    and metric lists from the sessions themselves, whereas a config is one per logdir (the
    plugin picks the first it finds), so a config written by each run would impose one run's
    lists on all of them.
  Run information: a markdown text summary ``run_info`` in the train/ writer at the session's
    start step (tab "Text"): command, code version, strategy and replicas, host, start step,
    package versions; run_info.json holds the same.
  Display: ``omission`` keeps out of the charts the scalars that cannot be read in them (not
    finite, or an estimate beyond ``DISPLAY_BOUND_NATS``); ``Display`` gives each tag its
    description (``DESCRIPTIONS``) in its first summary and counts and names the values left
    out. metrics.jsonl keeps every raw value. The HParams cell of such a tag holds its last
    CHARTED value (the plugin reads the last scalar), e.g. I_NWJ/test of step 0 on an
    InfoNCE run; the text display/omitted says from which step on.
"""

import math
import os
import shlex
import weakref

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from mi_tf import gin_files
from mi_tf import provenance

# Estimates (tags I_*: I_EST, I_NCE/test, I_NWJ/train, ...) are in nats. No estimate of these
# experiments means anything beyond 1e3 nats in magnitude: InfoNCE is at most log(batch size)
# (4.9 nats for 128 pairs), the toy's true MI is below one nat, and the images' estimates are
# a few to a few tens of nats. A value beyond it is an artifact of the estimator, e.g. the NWJ
# bound of an InfoNCE-trained critic: InfoNCE leaves the critic's scores free up to a shift
# per row, NWJ's exp(f - 1) does not, and on the quick MNIST run I_NWJ/test reaches -9e27
# nats; plotted, one such value flattens every other point of its chart.
DISPLAY_BOUND_NATS = 1e3
ESTIMATE_PREFIX = 'I_'
OMITTED_COUNT_TAG = 'display/omitted_values'
OMITTED_NOTE_TAG = 'display/omitted'
RUN_INFO_TAG = 'run_info'

# Descriptions of ambiguous tags (TensorBoard shows them beside the chart). Train-writer tags
# are means over the log window; eval-writer tags are values at one evaluation.
DESCRIPTIONS = {
    'loss': 'The task\'s training loss on the training batches (MI tasks: -I_EST, or '
            '|I_EST - t| with a target t), mean over the log window.',
    'I_EST': 'The trained estimator on the training batches, mean over the log window.',
    'grad_norm': 'Global gradient norm of the training steps, mean over the log window.',
    'skipped_steps': 'Non-finite steps skipped so far (train.nonfinite_policy=\'skip\').',
    'steps_per_second': 'Training speed over the log window (evaluations excluded).',
    'wall_seconds': 'Training and evaluation wall time of all sessions so far.',
    'I_EST/train': 'The trained estimator on train-split examples at the evaluation (the first '
                   'train_estimate_examples pairs, in blocks of eval_batch_size).',
    'I_EST/test': 'The trained estimator on the test split at the evaluation (blocks of '
                  'eval_batch_size pairs).',
    'I_EST/eval': 'The trained estimator on the fresh evaluation batches (Gaussian toy).',
    'true_mi': 'The true mutual information of the Gaussian toy, in nats.',
    'probe/test_accuracy': "Test accuracy of the paper's linear probe (logistic regression "
                           "on g1's representation of the probe-training split).",
    'probe/train_accuracy': "Probe-training accuracy of the paper's linear probe.",
    'probe_fast/test_accuracy': 'Test accuracy of the converged logistic-regression probe '
                                '(evaluated at step 0 and at the last step only).',
    'probe_knn/test_accuracy': 'Test accuracy of the k-NN probe (cosine similarity, majority '
                               'vote of the 20 nearest probe-training examples; evaluated at '
                               'step 0 and at the last step only).',
    'tuba/log_baseline': "The learned log-baseline a of I_TUBA (MIMaximization."
                         "learned_baseline; I_EST is TUBA at this a).",
    'dv/log_moving_average': "Log of MINE's moving average of E_q[exp f], the denominator of "
                             "I_DV's corrected gradient (MIMaximization.dv_moving_average).",
    OMITTED_COUNT_TAG: 'Scalars of this step left out of the charts (not finite, or an '
                       f'estimate beyond {DISPLAY_BOUND_NATS:g} nats); metrics.jsonl has '
                       'them. The text display/omitted names them.',
}


def description(tag):
  """The TensorBoard description of ``tag`` (None if it needs none): DESCRIPTIONS, then
  estimators other than the trained one on an evaluation split (``I_NWJ/test``)."""
  if tag in DESCRIPTIONS:
    return DESCRIPTIONS[tag]
  name, _, split = tag.partition('/')
  if name.startswith(ESTIMATE_PREFIX) and name != 'I_EST' and split in ('train', 'test'):
    return (f'The estimator {name} with the trained critic on '
            + ('train-split examples' if split == 'train' else 'the test split')
            + ' at the evaluation (I_EST is the trained estimator).')
  return None


def omission(tag, value):
  """Why the scalar ``value`` of ``tag`` is kept out of the charts, or None to chart it."""
  value = float(value)
  if not math.isfinite(value):
    return f'{value} is not finite'
  if tag.startswith(ESTIMATE_PREFIX) and abs(value) > DISPLAY_BOUND_NATS:
    return (f'{value:.4g} nats is beyond the display bound of {DISPLAY_BOUND_NATS:g} nats '
            '(no MI estimate of these experiments means anything that far out)')
  return None


class Display:
  """What one summary writer has shown so far in this process: the tags already described
  (a description is stored with every summary that carries it, so only the first one does)
  and the tags whose omission was already explained."""

  _BY_WRITER = weakref.WeakKeyDictionary()

  def __init__(self):
    self.described = set()
    self.noted = set()

  @classmethod
  def of(cls, writer):
    if writer not in cls._BY_WRITER:
      cls._BY_WRITER[writer] = cls()
    return cls._BY_WRITER[writer]

  def describe(self, tag):
    """The description to write with this summary of ``tag``: at its first summary only."""
    if tag in self.described:
      return None
    self.described.add(tag)
    return description(tag)

  def write_omitted(self, step, omitted):
    """``omitted``: {tag: reason}. Writes their number (display/omitted_values) and, for tags
    left out for the first time, a text naming them; inside ``writer.as_default``."""
    if not omitted:
      return
    tf.summary.scalar(OMITTED_COUNT_TAG, len(omitted), step=step,
                      description=self.describe(OMITTED_COUNT_TAG))
    new = sorted(t for t in omitted if t not in self.noted)
    if new:
      self.noted.update(new)
      lines = [f'- `{t}` at step {step}: {omitted[t]}.' for t in new]
      tf.summary.text(OMITTED_NOTE_TAG, '\n'.join(
          ['Left out of the charts (metrics.jsonl keeps every value; later values of these '
           'tags are left out under the same rule and counted in display/omitted_values):']
          + lines), step=step)


def setting_from_command(command):
  """The experiment gin file's name without .gin (the last ``--gin_file`` that is not a
  fragment of gin/common/) of a command line (a list, as sys.argv), or None."""
  files, args = [], list(command or ())
  for i, arg in enumerate(args):
    if arg.startswith('--gin_file='):
      files.append(arg.split('=', 1)[1])
    elif arg == '--gin_file' and i + 1 < len(args):
      files.append(args[i + 1])
  settings = [f for f in files
              if os.path.basename(os.path.dirname(os.path.normpath(f)))
              != gin_files.FRAGMENTS]
  if not settings:
    return None
  name = os.path.basename(settings[-1])
  return name[:-len('.gin')] if name.endswith('.gin') else name


def session_hparams(task, seed, num_steps, batch_size, precision, setting=None):
  """The hyperparameters of a run for the HParams tab: {name: bool | int | float | str}.

  Every scalar of ``task.metadata()`` (task, dataset, encoder, critic, estimator, target,
  noise_std, ...), learning_rate and noise_std from the task (or its data) where the metadata
  lacks them, the training arguments, and the setting when it is known. None values (e.g.
  target of a maximisation run) are left out: the plugin shows an empty cell.
  """
  out = {k: v for k, v in task.metadata().items() if isinstance(v, (bool, int, float, str))}
  for name, owner in (('learning_rate', task), ('noise_std', getattr(task, 'data', None)),
                      ('dataset', getattr(task, 'data', None))):
    value = getattr(owner, name, None)
    if name not in out and isinstance(value, (bool, int, float, str)):
      out[name] = value
  out.update(seed=int(seed), num_steps=int(num_steps), batch_size=int(batch_size),
             precision=str(precision))
  if setting:
    out['setting'] = setting
  return out


def _cell(value):
  return str(value).replace('|', '\\|').replace('\n', ' ')


def run_info_markdown(info):
  """The markdown of the newest session of a run_info.json dict (its ``sessions[-1]``)."""
  session = info['sessions'][-1]
  code = session.get('code') or {}
  replicas = session.get('num_replicas')
  rows = [
      ('command', '`' + shlex.join(str(a) for a in session.get('command') or ()) + '`'),
      ('code', f"{provenance.short(code)}, {code.get('source', '?')}, mi_tf "
               f"{code.get('package_version', '?')}" if code else 'unknown'),
      ('strategy', f"{session.get('strategy')} ({replicas} replica"
                   f"{'' if replicas == 1 else 's'})"),
      ('host', session.get('host')),
      ('start', f"step {session.get('start_step')} at {session.get('start_time')}"),
      ('seed', info.get('seed')),
      ('versions', ', '.join(f'{k} {v}' for k, v in (info.get('versions') or {}).items())),
  ]
  return '\n'.join([f"### Session {len(info['sessions'])}", '', '| | |', '|---|---|']
                   + [f'| {k} | {_cell(v)} |' for k, v in rows])


def write_session_start(run, train_writer, task, seed, num_steps, batch_size, setting=None):
  """At a session's start, after ``run.write_run_info``: the HParams session start (events at
  the root of ``run.path``) and the run information text in ``train_writer``.

  ``run``: the ``mi_tf.run_dir.RunDir`` (its ``read_run_info`` gives the session).

  ``setting``: the experiment's name; None takes it from the session's command line
  (``setting_from_command``), which lacks it for runs not started by train.py. ``precision``
  is the Keras global policy now (``train`` sets it for the run).
  """
  info = run.read_run_info()
  session = info['sessions'][-1]
  setting = setting or setting_from_command(session.get('command'))
  params = session_hparams(task, seed, num_steps, batch_size,
                           keras.mixed_precision.global_policy().name, setting)
  root = tf.summary.create_file_writer(run.path)
  with root.as_default():
    # One group per run directory, so that runs with equal hyperparameters are rows apart.
    hp.hparams(params, trial_id=run.path.rstrip('/'))
  root.close()
  with train_writer.as_default(step=int(session['start_step'])):
    tf.summary.text(RUN_INFO_TAG, run_info_markdown(info))
  train_writer.flush()
  return params
