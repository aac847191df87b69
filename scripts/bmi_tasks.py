#!/usr/bin/env python
"""Our estimators on known-MI tasks of the benchmark-mi package (BMI; Czyz et al., NeurIPS 2023).

  python scripts/bmi_tasks.py                       # results/bmi_tasks.json, ~25 min on 1 core
  python scripts/bmi_tasks.py --steps=500 --bmi_steps=500 --tasks=multinormal-dense-5-5-0.5
  python scripts/bmi_tasks.py --bmi_results=results/bmi_tasks.json   # reuse BMI's estimates

BMI is JAX-based and is NOT a dependency of this project: it lives in its own virtual
environment (``python -m venv ~/bmi_venv && ~/bmi_venv/bin/pip install benchmark-mi``;
benchmark-mi 0.1.3 needs ``jax<0.4.34``, its equinox 0.10 fails to import with newer JAX),
given by --bmi_python. This script runs itself there with --sample: it draws each task's
samples (``bmi.BENCHMARK_TASKS[id].sample(n, seed)``) into .npz files in a temporary directory
and runs BMI's own neural estimators (InfoNCE, NWJ, Donsker-Varadhan, MINE; their defaults but
--bmi_steps steps) on the same samples. Then, here, every estimator of
``mi_tf.study.BOUND_ESTIMATORS`` trains each critic of --critics (``separable``: the
staircase's, 256 ReLU -> 32 per side; ``bmi_mlp``: our Concat critic with BMI's default
architecture, [x, y] -> 16 ReLU -> 8 ReLU -> 1) with Adam on the first half of the
standardised samples (minibatches of 128) and is evaluated on the second half as one score
matrix (every other test sample a negative: BMI's convention; also as the mean over blocks of
128), every 250 steps. TUBA here is the registry's (a = 0), not the learned baseline of
MIMaximization. The JSON holds per task, critic and estimator the final test estimate and the
best one over the evaluations (BMI's protocol: its ``TrainingLog.final_mi`` is the best test
value over training, an optimistic selection on the test half), |estimate - true MI| of
both, BMI's estimates on the same samples (its own random split), the commands and the
seconds; it is replaced atomically.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

# A multivariate normal, a Student-t and a transformed (spiral) task of BMI's benchmark.
TASKS = ('multinormal-dense-5-5-0.5', 'student-identity-5-5-3',
         'spiral-multinormal-sparse-5-5-2-2.0')
BMI_ESTIMATORS = {'infonce': 'InfoNCEEstimator', 'nwj': 'NWJEstimator',
                  'dv': 'DonskerVaradhanEstimator', 'mine': 'MINEEstimator'}


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--tasks', default=','.join(TASKS))
  parser.add_argument('--estimators', default=None,
                      help='ours (default: mi_tf.study.BOUND_ESTIMATORS)')
  parser.add_argument('--samples', type=int, default=5000)
  parser.add_argument('--steps', type=int, default=2000, help='our training steps')
  parser.add_argument('--bmi_steps', type=int, default=2000, help="BMI's training steps")
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--learning_rate', type=float, default=1e-3)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--critics', default='separable,bmi_mlp')
  parser.add_argument('--eval_every', type=int, default=250)
  parser.add_argument('--bmi_python', default=os.path.expanduser('~/bmi_venv/bin/python'),
                      help='the Python of the environment that has benchmark-mi')
  parser.add_argument('--bmi_results', default=None,
                      help="an earlier output of this script: reuse its BMI estimates (same "
                           "tasks, samples, seed and bmi_steps) instead of running BMI's "
                           'estimators again (the samples are drawn again either way)')
  parser.add_argument('--output', default='results/bmi_tasks.json')
  parser.add_argument('--sample', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--out_dir', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--no_estimators', action='store_true', help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def _sample(args):
  """In BMI's environment: the samples (.npz) and BMI's neural estimates (bmi.json)."""
  import bmi  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = {'bmi_version': getattr(bmi, '__version__', None), 'tasks': {}}
  try:
    from importlib import metadata  # pylint: disable=g-import-not-at-top
    out['bmi_version'] = metadata.version('benchmark-mi')
    out['jax_version'] = metadata.version('jax')
  except Exception:  # pylint: disable=broad-except
    pass
  for task_id in args.tasks.split(','):
    task = bmi.BENCHMARK_TASKS[task_id]
    x, y = task.sample(args.samples, seed=args.seed)
    np.savez(os.path.join(args.out_dir, f'{task_id}.npz'), x=np.asarray(x), y=np.asarray(y),
             mi=task.mutual_information)
    entry = {'true_mi': float(task.mutual_information), 'dim_x': task.dim_x,
             'dim_y': task.dim_y, 'estimators': {}}
    for name, cls in ({} if args.no_estimators else BMI_ESTIMATORS).items():
      start = time.time()
      estimator = getattr(bmi.estimators, cls)(max_n_steps=args.bmi_steps, verbose=False,
                                               seed=args.seed)
      value = float(estimator.estimate(x, y))
      entry['estimators'][name] = {'class': f'bmi.estimators.{cls}', 'estimate': value,
                                   'seconds': round(time.time() - start, 2)}
      print(f'bmi {task_id} {name}: {value:.3f} (true {task.mutual_information:.3f})',
            flush=True)
    out['tasks'][task_id] = entry
  with open(os.path.join(args.out_dir, 'bmi.json'), 'w') as f:
    json.dump(out, f)
  return 0


def _finite_or_none(x):
  return x if math.isfinite(x) else None


def _critic_factory(name):
  """() -> critic of a --critics name ('separable', 'concat' or 'bmi_mlp')."""
  from mi_tf import critics as critics_lib  # pylint: disable=g-import-not-at-top
  from mi_tf import staircase  # pylint: disable=g-import-not-at-top
  if name == 'bmi_mlp':  # BMI's default critic: MLP on [x, y], hidden layers (16, 8).
    return lambda: critics_lib.Concat(hidden_units=(16, 8))
  if name not in staircase.CRITICS:
    raise ValueError(f'Unknown critic {name!r}; choose bmi_mlp or one of '
                     f'{sorted(staircase.CRITICS)}.')
  return staircase.CRITICS[name]


def _reused_bmi(args):
  """{task: {estimator: entry}} of --bmi_results, checked against this run's samples."""
  with open(args.bmi_results) as f:
    old = json.load(f)
  same = {k: (old.get(k), getattr(args, k)) for k in ('samples', 'seed', 'bmi_steps')}
  if any(a != b for a, b in same.values()):
    raise ValueError(f'--bmi_results {args.bmi_results} was run with other settings: {same}.')
  missing = [t for t in args.tasks.split(',') if t not in old['tasks']]
  if missing:
    raise ValueError(f'--bmi_results {args.bmi_results} has no BMI estimates of {missing}.')
  return {t: old['tasks'][t]['bmi'] for t in args.tasks.split(',')}


def main(argv=None):
  args = _parse(argv)
  if args.sample:
    return _sample(args)
  argv = sys.argv[1:] if argv is None else list(argv)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mi_tf import files  # pylint: disable=g-import-not-at-top
  from mi_tf import staircase  # pylint: disable=g-import-not-at-top
  from mi_tf import study  # pylint: disable=g-import-not-at-top

  names = args.estimators.split(',') if args.estimators else list(study.BOUND_ESTIMATORS)
  critics = {c: _critic_factory(c) for c in args.critics.split(',')}
  reused = _reused_bmi(args) if args.bmi_results else None
  start = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    sample_cmd = [args.bmi_python, os.path.abspath(__file__), '--sample', f'--out_dir={tmp}',
                  f'--tasks={args.tasks}', f'--samples={args.samples}',
                  f'--bmi_steps={args.bmi_steps}', f'--seed={args.seed}']
    if reused is not None:
      sample_cmd.append('--no_estimators')
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               XLA_FLAGS='--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1')
    subprocess.run(sample_cmd, check=True, env=env)
    bmi_seconds = time.time() - start
    with open(os.path.join(tmp, 'bmi.json')) as f:
      bmi_out = json.load(f)
    data = {t: dict(np.load(os.path.join(tmp, f'{t}.npz'))) for t in args.tasks.split(',')}
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  results = {}
  for task_id, d in data.items():
    true_mi = float(d['mi'])
    # Standardised as BMI's estimators do (each coordinate over all samples), then split.
    x = (d['x'] - d['x'].mean(0)) / d['x'].std(0)
    y = (d['y'] - d['y'].mean(0)) / d['y'].std(0)
    order = np.random.default_rng(args.seed).permutation(len(x))
    train, test = order[:len(x) // 2], order[len(x) // 2:]
    entry = {'true_mi': true_mi, 'dim_x': int(x.shape[1]), 'dim_y': int(y.shape[1]),
             'ours': {}, 'bmi': {}}
    for critic, factory in critics.items():
      entry['ours'][critic] = {}
      for name in names:
        t0 = time.time()
        model, trace, curve = staircase.train_on_samples(
            x[train], y[train], factory, name, num_steps=args.steps,
            batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
            test=(x[test], y[test]), eval_every=args.eval_every)
        final = curve[-1][1]
        finite = [v for _, v in curve if math.isfinite(v)]
        best = max(finite) if finite else math.nan
        blocks = staircase.estimate_on_samples(model, name, x[test], y[test], args.batch_size)
        entry['ours'][critic][name] = {
            'estimate': _finite_or_none(final),
            'abs_error': _finite_or_none(abs(final - true_mi)),
            'best_test': _finite_or_none(best),
            'abs_error_best_test': _finite_or_none(abs(best - true_mi)),
            'estimate_b128': _finite_or_none(blocks),
            'train_last_100_mean': _finite_or_none(float(np.mean(trace[-100:]))),
            'test_curve': [[s, _finite_or_none(v)] for s, v in curve],
            'seconds': round(time.time() - t0, 2)}
        print(f'ours {task_id} {critic} {name}: final {final:.3f}, best {best:.3f} (true '
              f'{true_mi:.3f}) {time.time() - t0:.1f} s', flush=True)
    if reused is not None:
      entry['bmi'] = reused[task_id]
    else:
      for name, b in bmi_out['tasks'][task_id]['estimators'].items():
        entry['bmi'][name] = dict(b, estimate=_finite_or_none(b['estimate']),
                                  abs_error=_finite_or_none(abs(b['estimate'] - true_mi)))
    results[task_id] = entry
  record = {
      'command': ' '.join(['python', 'scripts/bmi_tasks.py'] + argv),
      'bmi_sample_command': ' '.join(['<bmi_python>', 'scripts/bmi_tasks.py'] + sample_cmd[2:3]
                                     + sample_cmd[4:]),
      'bmi_estimates': (f'reused from {args.bmi_results}' if reused is not None
                        else 'run here'),
      'bmi_version': bmi_out.get('bmi_version'), 'jax_version': bmi_out.get('jax_version'),
      'samples': args.samples, 'split': 'first half (random permutation) train, second test',
      'steps': args.steps, 'bmi_steps': args.bmi_steps, 'batch_size': args.batch_size,
      'learning_rate': args.learning_rate, 'eval_every': args.eval_every,
      'critics': {'separable': '256 ReLU -> 32 per side, f = phi1(x) . phi2(y)',
                  'bmi_mlp': 'Concat: [x, y] -> 16 ReLU -> 8 ReLU -> 1 (BMI\'s default)'},
      'seed': args.seed, 'bmi_seconds': round(bmi_seconds, 2),
      'seconds': round(time.time() - start, 2), 'tasks': results}
  files.makedirs(os.path.dirname(os.path.abspath(args.output)))
  files.write_atomic(args.output, json.dumps(record, indent=2, allow_nan=False) + '\n')
  print(f'wrote {args.output} in {time.time() - start:.0f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
