#!/usr/bin/env python
"""Plots learned-critic estimates of I_NCE and I_NWJ against a staircase of known MI.

  python scripts/plot_staircase.py                # docs/staircase.png, a few minutes on CPU
  python scripts/plot_staircase.py --steps_per_level=4000 --output=/tmp/staircase.png
                                                  # the schedule of Poole et al.

Correlated Gaussians of dimension 20 (mi_tf.validation), MI 2, 4, 6, 8, 10 nats, batch 128,
separable and concat critics (mi_tf.staircase). Thin lines: per-step training estimates;
thick: their moving average; black: the true MI; dashed: log B, the ceiling of I_NCE.
"""

import argparse
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--steps_per_level', type=int, default=1000)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--critics', default='separable,concat')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default='docs/staircase.png')
  args = parser.parse_args(argv)

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mi_tf import staircase  # pylint: disable=g-import-not-at-top

  critics = args.critics.split(',')
  fig, axes = plt.subplots(1, len(critics), figsize=(5.5 * len(critics), 4), sharey=True,
                           squeeze=False)
  summary = {}
  for ax, critic in zip(axes[0], critics):
    for estimator, color in (('infonce', 'tab:blue'), ('nwj', 'tab:orange')):
      run = staircase.train_staircase(critic, estimator, steps_per_level=args.steps_per_level,
                                      batch_size=args.batch_size, seed=args.seed)
      steps = np.arange(len(run['estimate']))
      label = {'infonce': '$I_{NCE}$', 'nwj': '$I_{NWJ}$'}[estimator]
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
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  fig.savefig(args.output, dpi=80)
  with open(os.path.splitext(args.output)[0] + '.json', 'w') as f:
    json.dump({'true_mi_levels': [2, 4, 6, 8, 10], 'level_means_last_half': summary,
               'steps_per_level': args.steps_per_level, 'batch_size': args.batch_size,
               'seed': args.seed}, f, indent=2)
  print(f'wrote {args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
