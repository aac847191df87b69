"""Aggregation over seeds, the paper's figures, the claim checks and REPRODUCTION.md.

The package, by stage (each module's docstring says more):
  ``results``  ``load_runs(runs_dir)`` reads the run directories (metrics.jsonl,
      final_metrics.json, probe_result.json, run_info.json, config.gin);
      ``aggregate(records_by_setting)`` -> rows {setting, split, metric, step, n, mean, sd,
      min, max, n_nonfinite}: per setting, curve and step, the mean and SD (ddof=1) over
      seeds; ``Table(rows)`` -> look-ups (``curve``, ``first``, ``final``) used by figures
      and claims; ``write_csv``.
  ``claims``   ``claim1(table)`` ... ``claim6(table)`` (MNIST) and the App. G claims on
      CIFAR-10 (``claim4_cifar10``, ``claim5_cifar10``, ``claim_pixels_cifar10``; ids
      ``study.CLAIM_IDS``) -> {id, claim, status PASS | FAIL |
      INCONCLUSIVE | INSUFFICIENT_DATA, checks, numbers, n_seeds, notes}: every comparison
      decided by >= SEPARATION (2) standard errors of the seed noise with >= MIN_SEEDS (3)
      seeds a side; ``check_claims`` decides each claim under the paper's probe (``status``),
      the converged probe (``status_converged``) and the k-NN probe (``status_knn``).
  ``figures``  ``figure_<name>(table)`` -> a matplotlib Figure (or None without data).
  ``markdown`` ``render_markdown(...)``, ``replace_generated(text, section)``.
  ``existing`` the report already in an output directory: its run inventory, the rule that a
      report never holds fewer runs than the one it replaces (``FewerRuns``), and the merge
      that keeps the settings a partial report has no runs of.
The pure parts (tables in, results out) are tested on synthetic tables. ``write_report(...)``
(here) writes results/curves.csv, results/summary.json, figures/*.png (also as TensorBoard
images) and the generated section of REPRODUCTION.md, each replaced atomically, after the
check. Setting names come from ``mi_tf.study``; run directories, the runner's history and
failures from ``mi_tf.runs``.

Only FINISHED runs enter the aggregates; unfinished, failed and missing runs are listed as such.
Non-finite values (e.g. I_NWJ = -inf for a critic trained with InfoNCE) are kept with IEEE
semantics: a mean over seeds with a -inf is -inf, its SD NaN; ``n_nonfinite`` counts them.
"""

import datetime
import json
import os
import pathlib
import re

from mi_tf import files
from mi_tf import jsonl
from mi_tf import runs as runs_lib
from mi_tf import study
from mi_tf.report import claims
from mi_tf.report import existing
from mi_tf.report import figures
from mi_tf.report import markdown
from mi_tf.report import results
from mi_tf.report import seeds
from mi_tf.report.claims import check_claims
from mi_tf.report.claims import claim1
from mi_tf.report.claims import claim2
from mi_tf.report.claims import claim3
from mi_tf.report.claims import claim4
from mi_tf.report.claims import claim5
from mi_tf.report.claims import claim6
from mi_tf.report.claims import claim4_cifar10
from mi_tf.report.claims import claim5_cifar10
from mi_tf.report.claims import claim_bounds
from mi_tf.report.claims import claim_function
from mi_tf.report.claims import claim_metric_learning
from mi_tf.report.claims import claim_negatives
from mi_tf.report.claims import claim_pixels_cifar10
from mi_tf.report.claims import claim_text
from mi_tf.report.claims import CLAIMS
from mi_tf.report.claims import compare
from mi_tf.report.claims import constant
from mi_tf.report.claims import FAIL
from mi_tf.report.claims import HOLDS
from mi_tf.report.claims import INCONCLUSIVE
from mi_tf.report.claims import INSUFFICIENT
from mi_tf.report.claims import MATCH_TOLERANCE
from mi_tf.report.claims import MIN_SEEDS
from mi_tf.report.claims import PASS
from mi_tf.report.claims import REVERSED
from mi_tf.report.claims import SEPARATION
from mi_tf.report.claims import separation
from mi_tf.report.claims import spearman
from mi_tf.report.claims import TRUE_MI_SEC4
from mi_tf.report.claims import UNRESOLVED
from mi_tf.report.existing import FewerRuns
from mi_tf.report.existing import ReportError
from mi_tf.report.figures import DPI
from mi_tf.report.figures import FIGSIZE_1
from mi_tf.report.figures import FIGSIZE_2
from mi_tf.report.figures import FIGSIZE_3
from mi_tf.report.figures import FIGSIZE_4
from mi_tf.report.figures import FIGURES
from mi_tf.report.figures import flag_title
from mi_tf.report.figures import LOG_BATCH
from mi_tf.report.figures import write_figures
from mi_tf.report.figures import write_tensorboard_images
from mi_tf.report.markdown import _duration
from mi_tf.report.markdown import BEGIN_MARK
from mi_tf.report.markdown import DEFAULT_HEADER
from mi_tf.report.markdown import END_MARK
from mi_tf.report.markdown import SUMMARY_BEGIN
from mi_tf.report.markdown import SUMMARY_END
from mi_tf.report.markdown import machine_info
from mi_tf.report.markdown import render_markdown
from mi_tf.report.markdown import render_summary
from mi_tf.report.markdown import replace_generated
from mi_tf.report.markdown import replace_summary
from mi_tf.report.results import _json_safe
from mi_tf.report.results import ACC
from mi_tf.report.results import ACC_FAST
from mi_tf.report.results import ACC_KNN
from mi_tf.report.results import aggregate
from mi_tf.report.results import CSV_COLUMNS
from mi_tf.report.results import finished_records
from mi_tf.report.results import gaussian_smooth
from mi_tf.report.results import inventory
from mi_tf.report.results import load_run
from mi_tf.report.results import load_runs
from mi_tf.report.results import Table
from mi_tf.report.results import write_csv

# The public names of the stages, for callers that import the package only.
__all__ = [
    'ACC',
    'ACC_FAST',
    'ACC_KNN',
    'aggregate',
    'BEGIN_MARK',
    'check_claims',
    'claim1',
    'claim2',
    'claim3',
    'claim4',
    'claim5',
    'claim6',
    'claim4_cifar10',
    'claim5_cifar10',
    'claim_bounds',
    'claim_function',
    'claim_metric_learning',
    'claim_negatives',
    'claim_pixels_cifar10',
    'claim_text',
    'CLAIMS',
    'claims',
    'compare',
    'constant',
    'CSV_COLUMNS',
    'DEFAULT_HEADER',
    'DPI',
    'END_MARK',
    'existing',
    'FAIL',
    'FewerRuns',
    'FIGSIZE_1',
    'FIGSIZE_2',
    'FIGSIZE_3',
    'FIGSIZE_4',
    'FIGURES',
    'figures',
    'flag_title',
    'gaussian_smooth',
    'HOLDS',
    'INCONCLUSIVE',
    'INSUFFICIENT',
    'inventory',
    'load_run',
    'load_runs',
    'LOG_BATCH',
    'machine_info',
    'markdown',
    'MATCH_TOLERANCE',
    'MIN_SEEDS',
    'PASS',
    'render_markdown',
    'render_summary',
    'replace_generated',
    'replace_summary',
    'ReportError',
    'results',
    'REVERSED',
    'run_arguments',
    'SEPARATION',
    'separation',
    'spearman',
    'SUMMARY_BEGIN',
    'SUMMARY_END',
    'Table',
    'TRUE_MI_SEC4',
    'UNRESOLVED',
    'write_csv',
    'write_figures',
    'write_report',
    'write_tensorboard_images',
]


def __getattr__(name):
  """``CLAIM_TEXT``: {claim id: statement}, built when read (it follows ``mi_tf.study``)."""
  if name == 'CLAIM_TEXT':
    return claims.CLAIM_TEXT
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')



def run_arguments(setting, seed, run):
  """The arguments beyond its setting's a run was started with (sorted; [] if none).

  E.g. ['--gin_bindings=train.num_steps=300'] for a short smoke run. Two records are read,
  so that either one suffices: the run's run_info.json (train.py records the argv of every
  session: its --gin_bindings and --gin_file beyond those of the study's Setting), and the
  runner's log (``runs.other_arguments``: the last argv a runner started the run with, when
  it differs from the plan's command; this covers probe runs, which have no run_info.json).

  Args:
    setting: the setting's name (``study.make_setting`` gives its gin files and bindings).
    seed: the run's seed.
    run: a run of ``load_runs`` (run_info, model_dir).
  """
  s = study.make_setting(setting)
  plan = runs_lib.Run(s, seed, os.path.abspath(run['model_dir']))
  own = set(runs_lib.command(plan)[1:])
  out = set()
  for session in (run.get('run_info') or {}).get('sessions', []):
    out |= {a for a in session.get('command') or []
            if a.startswith(('--gin_bindings=', '--gin_file=')) and a not in own}
  other = runs_lib.other_arguments(plan)
  if other:
    out |= {a for a in other if a not in own and not a.startswith('--model_dir=')}
  return sorted(out)


FIRST_STUDY = os.path.join('results', 'first_study', 'summary.json')


def _first_study_finals(output_dir):
  """The first study's final values ({setting: {metric: row}}) from ``FIRST_STUDY`` in
  output_dir, or {} (none there, or unreadable: the comparison is left out)."""
  summary = jsonl.read_json(os.path.join(output_dir, FIRST_STUDY), {})
  return (summary.get('final_values') or {}) if isinstance(summary, dict) else {}


def _code_of(sessions):
  """The code a training run trained with: its sessions' commits (12 characters, '+dirty'
  for a tree with uncommitted changes; 'unrecorded' for sessions from before runs recorded
  it), joined by ' then ' where the sessions differ."""
  seen = []
  for session in sessions:
    c = session.get('code') or {}
    name = (str(c['commit'])[:12] + ('+dirty' if c.get('dirty') else '')
            if c.get('commit') else 'unrecorded')
    if name not in seen:
      seen.append(name)
  return ' then '.join(seen)


def _precisions(run):
  """The dtype policies (``train.precision``) a finished training run trained under: each
  session's record in run_info.json; for sessions from before they recorded it, the config's
  ``train.precision`` binding, else the default, float32."""
  m = re.search(r"^train\.precision\s*=\s*'(\w+)'", run['config'] or '', flags=re.M)
  fallback = m.group(1) if m else 'float32'
  sessions = (run.get('run_info') or {}).get('sessions') or []
  return {session.get('precision') or fallback for session in sessions} or {fallback}


def _wall_total(wall_seconds):
  """'[at least ]H:MM:SS' of {setting: [seconds, exact?]} together."""
  exact = all(ok for _, ok in wall_seconds.values())
  return ('' if exact else 'at least ') + _duration(sum(s for s, _ in wall_seconds.values()))


def write_report(runs_dir, output_dir, planned_runs=(), tensorboard_dir=None, command='',
                 allow_fewer_runs=False):
  """Loads the runs, writes results/, figures/, TensorBoard images and REPRODUCTION.md.

  Never loses results (``mi_tf.report.existing``): the report covers the settings of the plan
  and those with runs in runs_dir (its scope); if a setting of the scope would hold fewer
  finished runs than the report already in output_dir holds for it, nothing is written and
  ``FewerRuns`` is raised (unless ``allow_fewer_runs``). The existing report's other settings
  are kept (their rows, inventory, final values and figures; the claims are decided again on
  the merged table), and only the figures that read a setting of the scope are redrawn or
  removed. Every file is replaced atomically (a temporary file in its directory, then a
  rename): a report stopped halfway leaves each file whole, old or new.

  Args:
    runs_dir: root of <setting>/seed<k> run directories.
    output_dir: where REPRODUCTION.md, figures/ and results/ go.
    planned_runs: the runner's plan (objects with .setting.name and .seed), for the
      inventory of missing runs.
    tensorboard_dir: where the figures are logged as images (None: not logged).
    command: the command line, quoted in the report.
    allow_fewer_runs: replace the existing report's runs even with fewer.

  Returns:
    dict: claims, table, figures ({name: path|None}), path, kept (settings kept).

  Raises:
    ReportError: output_dir or runs_dir is a file, or the existing report is unreadable;
      FewerRuns (a ReportError): see above. Nothing is written then.
  """
  for name, path in (('output_dir', output_dir), ('runs_dir', runs_dir)):
    if os.path.exists(path) and not os.path.isdir(path):
      raise ReportError(f'{name} {path} is a file, not a directory.')
  runs = load_runs(runs_dir)
  planned = [(r.setting.name, r.seed) for r in planned_runs]
  inv = inventory(runs, planned)
  scope = set(inv)
  old = existing.read(output_dir)
  existing.check(old, output_dir, {s: len(e['finished']) for s, e in inv.items()}, scope,
                 allow_fewer_runs)
  kept = existing.kept_settings(old, scope)

  finished = finished_records(runs)
  rows = existing.merge_rows(aggregate(finished), old, kept)
  table = Table(rows)
  claims = check_claims(table)
  flags = {}  # {setting: arguments of its finished runs beyond the study's}.
  for s, by_seed in runs.items():
    args = sorted({a for seed, r in by_seed.items() if r['finished']
                   for a in run_arguments(s, seed, r)})
    if args:
      flags[s] = args

  history = runs_lib.read_history(runs_dir)  # The runner's attempts, read once.
  walls = runs_lib.wall_seconds(runs, runs_dir, history)  # {setting: [(seconds, exact?)]}.
  steps, wall, wall_seconds, versions, hosts, precision = {}, {}, {}, None, set(), {}
  code = {}  # {code of a finished training run's sessions: number of such runs}.
  for s, by_seed in runs.items():
    step_set, configs, policies = set(), set(), set()
    for run in by_seed.values():
      info = run.get('run_info') or {}
      for session in info.get('sessions', []):
        hosts.add(session.get('host', '?'))
      if not run['finished']:
        continue
      versions = versions or info.get('versions')
      if run['final'] and 'step' in run['final']:
        step_set.add(run['final']['step'])
      sessions = (info.get('sessions') or []) if run['config'] is not None else []
      if sessions:
        key = _code_of(sessions)
        code[key] = code.get(key, 0) + 1
      if run['config'] is not None:  # The seed binding aside, every seed's config is equal.
        configs.add(re.sub(r'^train\.seed\s*=.*$', '', run['config'], flags=re.M))
        policies.update(_precisions(run))
    if policies:
      precision[s] = ', '.join(sorted(policies)) + (
          ' (differs across seeds or sessions!)' if len(policies) > 1 else '')
    if step_set:
      steps[s] = ', '.join(str(x) for x in sorted(step_set)) + (
          ' (configs differ across seeds!)' if len(configs) > 1 else '')
    seconds = [sec for sec, _ in walls.get(s, [])]
    exact = all(ok for _, ok in walls.get(s, []))
    if seconds:
      # A run resumed before runs recorded their total shows its last session only: the
      # mean is then a lower bound.
      wall[s] = ('' if exact else '≥ ') + _duration(sum(seconds) / len(seconds))
      wall_seconds[s] = [sum(seconds), exact]
  failures = {k: v for k, v in runs_lib.read_failures(runs_dir).items()
              if not runs.get(v.get('setting'), {}).get(v.get('seed'), {}).get('finished')}
  info = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'command': command,
          'commit': runs_lib.git_info(), 'runs_dir': os.path.abspath(runs_dir),
          'machine': machine_info(), 'steps': steps, 'wall': wall, 'hosts': sorted(hosts),
          'flags': flags, 'wall_seconds': wall_seconds, 'precision': precision,
          'run_code': dict(sorted(code.items())),
          'versions': ', '.join(f'{k} {v}' for k, v in (versions or {}).items()
                                if k in ('tensorflow', 'keras', 'scikit-learn', 'python'))}
  # The kept settings' final values are taken from the existing summary where it has them.
  finals = {s: {m: table.final(s, m) for m in table.metrics(s)} for s in table.settings()}
  parts = existing.merge_summary(old, kept, {
      'inventory': inv, 'failures': failures, 'info': info,
      'final_values': {s: {m: {k: r[k] for k in ('step', 'n', 'mean', 'sd', 'min', 'max')}
                           for m, r in v.items()} for s, v in finals.items()}})
  inv, failures, info = parts['inventory'], parts['failures'], parts['info']
  info['total_wall'] = _wall_total(info['wall_seconds'])
  busy, span = runs_lib.sweep_wall_seconds(runs_dir, history=history)
  info['sweep_wall'] = {'busy_seconds': busy, 'span_seconds': span}
  try:
    info['seed_rounds'] = seeds.read_rounds(runs_dir)
  except ValueError as e:
    raise ReportError(str(e)) from None

  # Only now, with nothing refused, is anything written.
  results_dir = os.path.join(output_dir, 'results')
  figures_dir = os.path.join(output_dir, 'figures')
  os.makedirs(results_dir, exist_ok=True)
  owned = existing.owned_figures(scope)
  drawn = write_figures(table, figures_dir, info['flags'], names=owned)
  old_figures = ((old.summary or {}).get('figures') or {}) if old else {}
  paths = {}
  for name in FIGURES:
    if name in owned:
      paths[name] = drawn[name]
    elif old_figures.get(name) and os.path.isfile(os.path.join(output_dir, old_figures[name])):
      paths[name] = os.path.join(output_dir, old_figures[name])
    else:
      paths[name] = None
  if tensorboard_dir:
    write_tensorboard_images(paths, tensorboard_dir)
  write_csv(rows, os.path.join(results_dir, 'curves.csv'))
  rel_figures = {k: (os.path.relpath(v, output_dir) if v else None) for k, v in paths.items()}
  info['first_study'] = _first_study_finals(output_dir)
  section = render_markdown(table, claims, inv, failures, rel_figures, info)
  path = os.path.join(output_dir, 'REPRODUCTION.md')
  text = pathlib.Path(path).read_text() if os.path.exists(path) else None
  text = replace_summary(replace_generated(text, section), render_summary(claims, info))
  files.write_atomic(path, text)
  summary = {'generated': info, 'claims': claims, 'inventory': inv, 'failures': failures,
             'final_values': parts['final_values'], 'figures': rel_figures}
  # Last: the run inventory the next report is checked against.
  files.write_atomic(os.path.join(results_dir, 'summary.json'),
                     json.dumps(_json_safe(summary), indent=1, sort_keys=True))
  for c in claims:
    colab = (f'; {c["colab_setting"]}: {c["colab_status"]} / '
             f'{c.get("colab_status_converged")}' if 'colab_status' in c else '')
    verdict = (f'{c["status"]} (reads no probe)' if c.get('probe') is None else
               f'{c["status"]} (paper probe), {c["status_converged"]} (converged probe), '
               f'{c.get("status_knn")} (k-NN probe)')
    print(f'Claim {c["id"]}: {verdict}{colab}')
  if kept:
    print(f'Kept {len(kept)} setting(s) of the earlier report (no runs of them planned or '
          f'found): {", ".join(kept)}')
  print(f'Wrote {path}, {results_dir}/, {figures_dir}/ ({len(owned)} of {len(FIGURES)} '
        'figures redrawn)')
  return {'claims': claims, 'table': table, 'figures': paths, 'path': path, 'kept': kept}
