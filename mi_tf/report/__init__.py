"""Aggregation over seeds, the paper's figures, the six claim checks and REPRODUCTION.md.

The package, by stage (each module's docstring says more):
  ``results``  ``load_runs(runs_dir)`` reads the run directories (metrics.jsonl,
      final_metrics.json, probe_result.json, run_info.json, config.gin);
      ``aggregate(records_by_setting)`` -> rows {setting, split, metric, step, n, mean, sd,
      min, max, n_nonfinite}: per setting, curve and step, the mean and SD (ddof=1) over
      seeds; ``Table(rows)`` -> look-ups (``curve``, ``first``, ``final``) used by figures
      and claims; ``write_csv``.
  ``claims``   ``claim1(table)`` ... ``claim6(table)`` -> {id, claim, status PASS | FAIL |
      INSUFFICIENT_DATA, numbers, n_seeds, notes}.
  ``figures``  ``figure_<name>(table)`` -> a matplotlib Figure (or None without data).
  ``markdown`` ``render_markdown(...)``, ``replace_generated(text, section)``.
The pure parts (tables in, results out) are tested on synthetic tables. ``write_report(...)``
(here) writes results/curves.csv, results/summary.json, figures/*.png (also as TensorBoard
images) and the generated section of REPRODUCTION.md. Setting names come from
``mi_tf.study``; run directories, the runner's history and failures from ``mi_tf.runs``.

Only FINISHED runs enter the aggregates; unfinished, failed and missing runs are listed as such.
Non-finite values (e.g. I_NWJ = -inf for a critic trained with InfoNCE) are kept with IEEE
semantics: a mean over seeds with a -inf is -inf, its SD NaN; ``n_nonfinite`` counts them.
"""

import datetime
import json
import os
import pathlib
import re

from mi_tf import runs as runs_lib
from mi_tf.report import claims
from mi_tf.report import claims as _claims
from mi_tf.report import figures
from mi_tf.report import markdown
from mi_tf.report import results
from mi_tf.report.claims import check_claims
from mi_tf.report.claims import claim1
from mi_tf.report.claims import claim2
from mi_tf.report.claims import claim3
from mi_tf.report.claims import claim4
from mi_tf.report.claims import claim5
from mi_tf.report.claims import claim6
from mi_tf.report.claims import claim_text
from mi_tf.report.claims import CLAIMS
from mi_tf.report.claims import FAIL
from mi_tf.report.claims import INSUFFICIENT
from mi_tf.report.claims import MATCH_TOLERANCE
from mi_tf.report.claims import NOISE_FACTOR
from mi_tf.report.claims import PASS
from mi_tf.report.claims import SEPARATION
from mi_tf.report.claims import separation
from mi_tf.report.claims import TRUE_MI_SEC4
from mi_tf.report.figures import DPI
from mi_tf.report.figures import FIGSIZE_1
from mi_tf.report.figures import FIGSIZE_2
from mi_tf.report.figures import FIGSIZE_3
from mi_tf.report.figures import FIGURES
from mi_tf.report.figures import LOG_BATCH
from mi_tf.report.figures import write_figures
from mi_tf.report.figures import write_tensorboard_images
from mi_tf.report.markdown import _duration
from mi_tf.report.markdown import BEGIN_MARK
from mi_tf.report.markdown import DEFAULT_HEADER
from mi_tf.report.markdown import END_MARK
from mi_tf.report.markdown import machine_info
from mi_tf.report.markdown import render_markdown
from mi_tf.report.markdown import replace_generated
from mi_tf.report.results import _json_safe
from mi_tf.report.results import ACC
from mi_tf.report.results import aggregate
from mi_tf.report.results import CSV_COLUMNS
from mi_tf.report.results import inventory
from mi_tf.report.results import load_run
from mi_tf.report.results import load_runs
from mi_tf.report.results import Table
from mi_tf.report.results import write_csv

# The public names of the stages, for callers that import the package only.
__all__ = [
    'ACC',
    'aggregate',
    'BEGIN_MARK',
    'check_claims',
    'claim1',
    'claim2',
    'claim3',
    'claim4',
    'claim5',
    'claim6',
    'claim_text',
    'CLAIMS',
    'claims',
    'CSV_COLUMNS',
    'DEFAULT_HEADER',
    'DPI',
    'END_MARK',
    'FAIL',
    'FIGSIZE_1',
    'FIGSIZE_2',
    'FIGSIZE_3',
    'FIGURES',
    'figures',
    'INSUFFICIENT',
    'inventory',
    'load_run',
    'load_runs',
    'LOG_BATCH',
    'machine_info',
    'markdown',
    'MATCH_TOLERANCE',
    'NOISE_FACTOR',
    'PASS',
    'render_markdown',
    'replace_generated',
    'results',
    'SEPARATION',
    'separation',
    'Table',
    'TRUE_MI_SEC4',
    'write_csv',
    'write_figures',
    'write_report',
    'write_tensorboard_images',
]


def __getattr__(name):
  """``CLAIM_TEXT``: {claim id: statement}, built when read (it follows ``mi_tf.study``)."""
  if name == 'CLAIM_TEXT':
    return _claims.CLAIM_TEXT
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')



def write_report(runs_dir, output_dir, planned_runs=(), tensorboard_dir=None, command=''):
  """Loads the runs, writes results/, figures/, TensorBoard images and REPRODUCTION.md.

  Args:
    runs_dir: root of <setting>/seed<k> run directories.
    output_dir: where REPRODUCTION.md, figures/ and results/ go.
    planned_runs: the runner's plan (objects with .setting.name and .seed), for the
      inventory of missing runs.
    tensorboard_dir: where the figures are logged as images (None: not logged).
    command: the command line, quoted in the report.

  Returns:
    dict: claims, paths.
  """
  runs = load_runs(runs_dir)
  finished = {s: {seed: r['records'] for seed, r in by_seed.items() if r['finished']}
              for s, by_seed in runs.items()}
  finished = {s: v for s, v in finished.items() if v}
  rows = aggregate(finished)
  table = Table(rows)
  claims = check_claims(table)

  results_dir = os.path.join(output_dir, 'results')
  os.makedirs(results_dir, exist_ok=True)
  write_csv(rows, os.path.join(results_dir, 'curves.csv'))
  figures = write_figures(table, os.path.join(output_dir, 'figures'))
  if tensorboard_dir:
    write_tensorboard_images(figures, tensorboard_dir)

  walls = runs_lib.wall_seconds(runs, runs_dir)  # {setting: [(seconds, exact?)]}.
  steps, wall, versions, hosts, total_seconds = {}, {}, None, set(), 0.0
  total_exact = True
  for s, by_seed in runs.items():
    step_set, configs = set(), set()
    for run in by_seed.values():
      info = run.get('run_info') or {}
      for session in info.get('sessions', []):
        hosts.add(session.get('host', '?'))
      if not run['finished']:
        continue
      versions = versions or info.get('versions')
      if run['final'] and 'step' in run['final']:
        step_set.add(run['final']['step'])
      if run['config'] is not None:  # The seed binding aside, every seed's config is equal.
        configs.add(re.sub(r'^train\.seed\s*=.*$', '', run['config'], flags=re.M))
    if step_set:
      steps[s] = ', '.join(str(x) for x in sorted(step_set)) + (
          ' (configs differ across seeds!)' if len(configs) > 1 else '')
    seconds = [sec for sec, _ in walls.get(s, [])]
    exact = all(ok for _, ok in walls.get(s, []))
    if seconds:
      # A run resumed before runs recorded their total shows its last session only: the
      # mean is then a lower bound.
      wall[s] = ('' if exact else '≥ ') + _duration(sum(seconds) / len(seconds))
      total_seconds += sum(seconds)
      total_exact &= exact
  failures = {k: v for k, v in runs_lib.read_failures(runs_dir).items()
              if not runs.get(v.get('setting'), {}).get(v.get('seed'), {}).get('finished')}
  inv = inventory(runs, [(r.setting.name, r.seed) for r in planned_runs])
  info = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'command': command,
          'commit': runs_lib.git_info(), 'runs_dir': os.path.abspath(runs_dir),
          'machine': machine_info(), 'steps': steps, 'wall': wall, 'hosts': sorted(hosts),
          'total_wall': ('' if total_exact else 'at least ') + _duration(total_seconds),
          'versions': ', '.join(f'{k} {v}' for k, v in (versions or {}).items()
                                if k in ('tensorflow', 'keras', 'scikit-learn', 'python'))}
  rel_figures = {k: (os.path.relpath(v, output_dir) if v else None) for k, v in figures.items()}
  section = render_markdown(table, claims, inv, failures, rel_figures, info)
  path = os.path.join(output_dir, 'REPRODUCTION.md')
  old = pathlib.Path(path).read_text() if os.path.exists(path) else None
  pathlib.Path(path).write_text(replace_generated(old, section))

  finals = {s: {m: table.final(s, m) for m in table.metrics(s)} for s in table.settings()}
  summary = {'generated': info, 'claims': claims, 'inventory': inv, 'failures': failures,
             'final_values': {s: {m: {k: r[k] for k in ('step', 'n', 'mean', 'sd', 'min', 'max')}
                                  for m, r in v.items()} for s, v in finals.items()},
             'figures': rel_figures}
  with open(os.path.join(results_dir, 'summary.json'), 'w') as f:
    json.dump(_json_safe(summary), f, indent=1, sort_keys=True)
  for c in claims:
    print(f'Claim {c["id"]}: {c["status"]}')
  print(f'Wrote {path}, {results_dir}/, {os.path.join(output_dir, "figures")}/')
  return {'claims': claims, 'table': table, 'figures': figures, 'path': path}
