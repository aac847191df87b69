#!/usr/bin/env python
"""Plots learned-critic MI estimates against a staircase of known MI (Poole et al. 2019, Fig. 2).

  python scripts/plot_staircase.py                # docs/staircase.png: I_NCE and I_NWJ,
                                                  # a few minutes on CPU
  python scripts/plot_staircase.py --steps_per_level=4000 --output=/tmp/staircase.png
                                                  # the schedule of Poole et al.
  python scripts/plot_staircase.py --family       # every estimator of the family (beyond the
                                                  # paper): figures/staircase_family.png and
                                                  # results/staircase_family.json
  python scripts/plot_staircase.py --family --estimators=infonce,dv --steps_per_level=200

Correlated Gaussians of dimension 20 (mi_tf.validation), MI 2, 4, 6, 8, 10 nats, batch 128,
separable and concat critics (mi_tf.staircase), each critic trained online with the
estimator's own objective. Thin lines: per-step training estimates; thick: their moving
average; black: the true MI; dashed: log B, the ceiling of I_NCE.

With --family (default estimators: mi_tf.study.BOUND_ESTIMATORS, one panel each) the JSON
holds, per estimator, critic and MI level, the bias (mean of the level's last half of
per-step estimates minus the MI) and the PLAIN variance of those estimates (ddof=1, no trend
removed; ``mi_tf.staircase.level_summary``), with the command, the steps and the seconds of
every run. Both files are replaced atomically.
"""

import argparse
import io
import json
import math
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

MI_LEVELS = (2, 4, 6, 8, 10)
CRITIC_COLORS = {'separable': 'tab:blue', 'concat': 'tab:orange'}


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--steps_per_level', type=int, default=1000)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--critics', default='separable,concat')
  parser.add_argument('--estimators', default=None,
                      help='comma-separated registered estimator names; default infonce,nwj, '
                           'with --family every one of mi_tf.study.BOUND_ESTIMATORS')
  parser.add_argument('--family', action='store_true',
                      help='one panel per estimator, both critics, and the bias/variance JSON')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=None,
                      help='the PNG (default docs/staircase.png; with --family '
                           'figures/staircase_family.png)')
  parser.add_argument('--json', default='results/staircase_family.json',
                      help='with --family: the bias/variance JSON')
  return parser.parse_args(argv)


def main(argv=None):
  args = _parse(argv)
  if args.family:
    return _family(args, sys.argv[1:] if argv is None else list(argv))
  return _classic(args)


def _classic(args):
  """Today's figure: one panel per critic, I_NCE and I_NWJ (or --estimators) in each."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mi_tf import estimators as estimators_lib  # pylint: disable=g-import-not-at-top
  from mi_tf import staircase  # pylint: disable=g-import-not-at-top

  output = args.output or 'docs/staircase.png'
  names = (args.estimators or 'infonce,nwj').split(',')
  critics = args.critics.split(',')
  fig, axes = plt.subplots(1, len(critics), figsize=(5.5 * len(critics), 4), sharey=True,
                           squeeze=False)
  summary = {}
  for ax, critic in zip(axes[0], critics):
    for k, estimator in enumerate(names):
      color = f'C{k}'
      run = staircase.train_staircase(critic, estimator, steps_per_level=args.steps_per_level,
                                      batch_size=args.batch_size, seed=args.seed)
      steps = np.arange(len(run['estimate']))
      label = f'${_tex(estimators_lib.get(estimator).metric)}$'
      ax.plot(steps, np.clip(run['estimate'], -5, 20), color=color, alpha=0.2, lw=0.5)
      ax.plot(steps, staircase.smooth(run['estimate']), color=color, lw=2, label=label)
      # Mean over the last half of each level, beside the true MI.
      level_means = []
      for mi in sorted(set(run['true_mi'])):
        idx = np.flatnonzero(run['true_mi'] == mi)
        level_means.append(float(np.nanmean(run['estimate'][idx[len(idx) // 2:]])))
      summary[f'{critic}/{estimator}'] = level_means
      print(f'{critic:9s} {estimator:7s} level means: '
            + ' '.join(f'{m:.2f}' for m in level_means), flush=True)
    ax.plot(steps, run['true_mi'], color='k', lw=1.5, label='true MI')
    ax.axhline(run['log_b'], color='gray', ls='--', lw=1, label=f'log B = {run["log_b"]:.2f}')
    ax.set_title(f'{critic} critic')
    ax.set_xlabel('training step')
    ax.set_ylim(-1, 14)
  axes[0][0].set_ylabel('MI estimate (nats)')
  axes[0][0].legend(loc='upper left')
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=80)
  with open(os.path.splitext(output)[0] + '.json', 'w') as f:
    json.dump({'true_mi_levels': list(MI_LEVELS), 'level_means_last_half': summary,
               'steps_per_level': args.steps_per_level, 'batch_size': args.batch_size,
               'seed': args.seed}, f, indent=2)
  print(f'wrote {output}')
  return 0


def _tex(metric):
  """'I_NCE' -> 'I_{NCE}' (matplotlib mathtext)."""
  head, _, tail = metric.partition('_')
  return f'{head}_{{{tail}}}' if tail else head


def _finite_or_none(x):
  return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _family(args, argv):
  """Every estimator on both critics: one panel per estimator, and the bias/variance JSON."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mi_tf import estimators as estimators_lib  # pylint: disable=g-import-not-at-top
  from mi_tf import files  # pylint: disable=g-import-not-at-top
  from mi_tf import staircase  # pylint: disable=g-import-not-at-top
  from mi_tf import study  # pylint: disable=g-import-not-at-top

  output = args.output or 'figures/staircase_family.png'
  names = args.estimators.split(',') if args.estimators else list(study.BOUND_ESTIMATORS)
  for name in names:
    estimators_lib.get(name)  # An unknown name fails before any training.
  critics = args.critics.split(',')
  unknown = [c for c in critics if c not in staircase.CRITICS]
  if unknown:
    raise ValueError(f'Unknown staircase critic(s) {unknown}; choose from '
                     f'{sorted(staircase.CRITICS)}.')
  cols = min(4, len(names))
  rows = math.ceil(len(names) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), sharey=True,
                           squeeze=False)
  results = {}
  start = time.time()
  for k, name in enumerate(names):
    ax = axes[k // cols][k % cols]
    metric = estimators_lib.get(name).metric
    results[name] = {}
    for critic in critics:
      t0 = time.time()
      run = staircase.train_staircase(critic, name, mi_levels=MI_LEVELS,
                                      steps_per_level=args.steps_per_level,
                                      batch_size=args.batch_size, seed=args.seed)
      seconds = time.time() - t0
      levels = staircase.level_summary(run, MI_LEVELS)
      results[name][critic] = {
          'metric': metric, 'seconds': round(seconds, 2),
          'levels': [{k2: _finite_or_none(v) for k2, v in lv.items()} for lv in levels]}
      steps = np.arange(len(run['estimate']))
      color = CRITIC_COLORS.get(critic)
      ax.plot(steps, np.clip(run['estimate'], -5, 20), color=color, alpha=0.2, lw=0.5)
      ax.plot(steps, staircase.smooth(run['estimate']), color=color, lw=2, label=critic)
      print(f'{name:7s} {critic:9s} {seconds:7.1f} s  bias: '
            + ' '.join(f'{lv["bias"]:+.2f}' for lv in levels) + '  variance: '
            + ' '.join(f'{lv["variance"]:.3f}' for lv in levels), flush=True)
    ax.plot(steps, run['true_mi'], color='k', lw=1.5, label='true MI')
    ax.axhline(run['log_b'], color='gray', ls='--', lw=1, label=f'log B = {run["log_b"]:.2f}')
    lower = '' if name not in study.NOT_LOWER_BOUNDS else ' (not a lower bound)'
    ax.set_title(f'{name}: ${_tex(metric)}${lower}', fontsize=10)
    ax.set_xlabel('training step')
    ax.set_ylim(-1, 14)
    ax.grid(alpha=0.3)
  for k in range(len(names), rows * cols):
    axes[k // cols][k % cols].axis('off')
  for r in range(rows):
    axes[r][0].set_ylabel('MI estimate (nats)')
  axes[0][0].legend(loc='upper left', fontsize=8)
  fig.suptitle(f'Learned critics on the staircase of known MI (batch {args.batch_size}, '
               f'{args.steps_per_level} steps per level)', fontsize=11)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=80)
  plt.close(fig)
  for path in (output, args.json):
    files.makedirs(os.path.dirname(os.path.abspath(path)))
  files.write_atomic(output, png.getvalue())
  record = {
      'command': ' '.join(['python', 'scripts/plot_staircase.py'] + list(argv)),
      'true_mi_levels': list(MI_LEVELS), 'steps_per_level': args.steps_per_level,
      'batch_size': args.batch_size, 'seed': args.seed, 'estimators': names,
      'critics': critics,
      'bias': 'mean of the finite per-step estimates over the last half of the level, '
              'minus the true MI',
      'variance': 'plain variance (ddof=1) of those estimates, no trend removed',
      'seconds': round(time.time() - start, 2), 'figure': output, 'results': results}
  files.write_atomic(args.json, json.dumps(record, indent=2, allow_nan=False) + '\n')
  print(f'wrote {output} and {args.json}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
