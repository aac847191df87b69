"""Loading run directories, aggregation over seeds, the results table and its CSV.

``load_runs(runs_dir)`` reads the run directories (metrics.jsonl, final_metrics.json,
probe_result.json, run_info.json, config.gin) into {setting: {seed: run}};
``aggregate(records_by_setting)`` -> rows {setting, split, metric, step, n, mean, sd, min,
max, n_nonfinite}: per setting, curve and step, the mean and SD (ddof=1) over seeds;
``Table(rows)`` -> look-ups (``curve``, ``first``, ``final``) used by figures and claims;
``inventory(runs, planned)`` -> the state of every planned run, per setting.

Non-finite values (e.g. I_NWJ = -inf for a critic trained with InfoNCE) are kept with IEEE
semantics: a mean over seeds with a -inf is -inf, its SD NaN; ``n_nonfinite`` counts them.
"""

import csv
import io
import math
import pathlib
import re

import numpy as np

from mi_tf import files
from mi_tf import jsonl
from mi_tf import runs as runs_lib

ACC = 'probe/test_accuracy'         # The paper's probe (SAGA, at every evaluation).
ACC_FAST = 'probe_fast/test_accuracy'  # The converged L-BFGS probe (step 0 and final step).
# The k-NN probe (cosine similarity, k = 20 majority vote: mi_tf.probe.KNN_K; step 0 and final
# step), the probe representation-learning suites report beside the linear one.
ACC_KNN = 'probe_knn/test_accuracy'
KNN_RESULT = 'probe_knn_result.json'  # What mi-tf-probe --probe=knn writes.

# Sec. 4: I_EST/train_smoothed, the training-batch estimates smoothed as the authors' code
# plots them: a Gaussian kernel with this SD, in training steps.
SMOOTHING_SIGMA_STEPS = 100.0

# Curves that are timing or bookkeeping, not results: left out of the aggregated table.
_EXCLUDED = re.compile(r'(seconds|steps_per_second|/updates)$')
CSV_COLUMNS = ('setting', 'split', 'metric', 'step', 'n', 'mean', 'sd', 'min', 'max',
               'n_nonfinite')


# ------------------------------------------------------------------ loading

def _float(value):
  """A metrics.jsonl value (number, or a string such as '-inf' / 'nan') as a float."""
  try:
    return float(value)
  except (TypeError, ValueError):
    return float('nan')


def _gin_int(config, name):
  m = re.search(rf'^{re.escape(name)}\s*=\s*(\d+)\s*$', config or '', re.M)
  return int(m.group(1)) if m else None


def gaussian_smooth(steps, values, sigma=SMOOTHING_SIGMA_STEPS):
  """Nadaraya-Watson smoothing of a curve with a Gaussian kernel of SD ``sigma`` steps.

  value'(s_i) = sum_j w_ij v_j / sum_j w_ij, w_ij = exp(-(s_i - s_j)^2 / (2 sigma^2)): a
  Gaussian filter on the step axis that needs no regular grid and is normalised at the ends
  of the curve (a constant curve stays constant). Returns a list of floats in the order of
  ``steps``.
  """
  s = np.asarray(steps, np.float64)
  v = np.asarray(values, np.float64)
  order = np.argsort(s, kind='mergesort')
  s_sorted, v_sorted = s[order], v[order]
  # The kernel is cut at 6 SDs (weights below 2e-8 of the centre's), so long curves cost
  # O(N x window) rather than O(N^2).
  lo = np.searchsorted(s_sorted, s - 6 * sigma, side='left')
  hi = np.searchsorted(s_sorted, s + 6 * sigma, side='right')
  out = []
  with np.errstate(invalid='ignore', over='ignore'):
    for x, a, b in zip(s, lo, hi):
      w = np.exp(-0.5 * ((s_sorted[a:b] - x) / sigma) ** 2)
      out.append(float(np.dot(w, v_sorted[a:b]) / w.sum()))
  return out


def _smoothed_training_estimate(records):
  """'I_EST/train_smoothed' records (split 'train') from the training records of I_EST."""
  train = {}
  for r in records:
    if r['split'] == 'train' and r['metric'] == 'I_EST':
      train[int(r['step'])] = _float(r['value'])  # A duplicate line: the last one wins.
  steps = sorted(train)
  smooth = gaussian_smooth(steps, [train[s] for s in steps])
  return [{'step': s, 'split': 'train', 'metric': 'I_EST/train_smoothed', 'value': v}
          for s, v in zip(steps, smooth)]


def load_run(model_dir):
  """One run directory -> dict(records, finished, final, run_info, config, kind, model_dir).

  Probe runs (probe_result.json) become records at step 0 (split 'eval'): test_accuracy as
  ACC, and fast_test_accuracy (the converged probe, when the run fitted it) as ACC_FAST; a
  probe_knn_result.json beside it (``--probe=knn``) gives ACC_KNN (and its leave-one-out
  train accuracy). Training runs log ACC_KNN themselves (step 0 and final evaluation).
  Sec. 4 runs (GaussianToy) get two derived curves: 'I_EST/eval_se' = I_EST/eval_sd /
  sqrt(GaussianToy.eval_batches), the standard error of one run's estimate due to its finite
  evaluation sample; and 'I_EST/train_smoothed' (split 'train'), the training-batch I_EST
  (window means logged every train.log_every steps) smoothed by ``gaussian_smooth`` with
  SD SMOOTHING_SIGMA_STEPS = 100 steps, the quantity the authors' code plots.
  """
  d = pathlib.Path(model_dir)
  # A training run may hold a probe_result.json too (eval_probe.py of its export writes it
  # there by default): a probe run is one WITHOUT a config.gin.
  probe = None if (d / 'config.gin').is_file() else jsonl.read_json(d / 'probe_result.json')
  if probe is not None:
    records = [{'step': 0, 'split': 'eval', 'metric': m, 'value': probe[k]}
               for m, k in ((ACC, 'test_accuracy'), ('probe/train_accuracy', 'train_accuracy'),
                            (ACC_FAST, 'fast_test_accuracy'),
                            ('probe_fast/train_accuracy', 'fast_train_accuracy'))
               if k in probe]
    knn = jsonl.read_json(d / KNN_RESULT) or {}
    records += [{'step': 0, 'split': 'eval', 'metric': m, 'value': knn[k]}
                for m, k in ((ACC_KNN, 'test_accuracy'),
                             ('probe_knn/train_accuracy', 'train_accuracy'))
                if knn.get(k) is not None]
    return {'records': records, 'finished': True, 'final': dict(probe, step=0),
            'run_info': None, 'config': None, 'kind': 'probe', 'model_dir': str(d)}
  records = jsonl.read(d / 'metrics.jsonl')
  config = (d / 'config.gin').read_text() if (d / 'config.gin').is_file() else None
  operative = (d / 'operative_config.gin').read_text() if (
      d / 'operative_config.gin').is_file() else None
  # config.gin holds what the gin file binds; the operative config also holds defaults.
  eval_batches = (_gin_int(config, 'GaussianToy.eval_batches')
                  or _gin_int(operative, 'GaussianToy.eval_batches'))
  if eval_batches:
    records = records + [
        {'step': r['step'], 'split': 'eval', 'metric': 'I_EST/eval_se',
         'value': _float(r['value']) / math.sqrt(eval_batches)}
        for r in records if r['split'] == 'eval' and r['metric'] == 'I_EST/eval_sd']
  if 'GaussianToy.' in (config or '') + (operative or ''):
    records = records + _smoothed_training_estimate(records)
  final = jsonl.read_json(d / 'final_metrics.json')
  # Finished: final_metrics.json AND its evaluation in metrics.jsonl (a finished run rerun
  # and stopped while re-evaluating has lost the latter; its last step would be wrong).
  finished = final is not None and any(
      r['split'] == 'eval' and r['step'] == final.get('step') for r in records)
  return {'records': records, 'finished': finished, 'final': final,
          'run_info': jsonl.read_json(d / 'run_info.json'), 'config': config, 'kind': 'train',
          'model_dir': str(d)}


def load_runs(runs_dir):
  """{setting: {seed: run}} for every <runs_dir>/<setting>/seed<k> directory."""
  out = {}
  root = pathlib.Path(runs_dir)
  if not root.is_dir():
    return out
  for setting_dir in sorted(p for p in root.iterdir() if p.is_dir()):
    for seed_dir in sorted(setting_dir.iterdir()):
      m = re.fullmatch(r'seed(\d+)', seed_dir.name)
      if m and seed_dir.is_dir():
        out.setdefault(setting_dir.name, {})[int(m.group(1))] = load_run(seed_dir)
  return out


# ------------------------------------------------------------------ aggregation

def finished_records(runs):
  """{setting: {seed: metrics.jsonl records}} of the FINISHED runs of ``load_runs`` (settings
  without a finished run left out): what the aggregates are made of."""
  finished = {s: {seed: r['records'] for seed, r in by_seed.items() if r['finished']}
              for s, by_seed in runs.items()}
  return {s: v for s, v in finished.items() if v}


def _stats(values):
  a = np.asarray(values, np.float64)
  with np.errstate(invalid='ignore', over='ignore'):
    mean = float(np.mean(a))
    sd = float(np.std(a, ddof=1)) if len(a) > 1 else float('nan')
  return {'n': int(len(a)), 'mean': mean, 'sd': sd, 'min': float(np.min(a)),
          'max': float(np.max(a)), 'n_nonfinite': int(np.sum(~np.isfinite(a)))}


def aggregate(records_by_setting, train_stride=500):
  """Mean and SD over seeds of every curve, per setting, split, metric and step.

  Args:
    records_by_setting: {setting: {seed: [metrics.jsonl records]}}.
    train_stride: keep training-split records at multiples of this step (they are logged
      every 100 steps; a coarser grid keeps the table small) and at each seed's last step of
      the curve (its final value). Evaluation records are all kept.

  Returns:
    list of rows (dicts with CSV_COLUMNS), sorted by setting, split, metric, step.
  """
  groups = {}
  for setting, by_seed in records_by_setting.items():
    for seed, records in by_seed.items():
      seen = set()
      last = {}
      for r in records:
        if r['split'] == 'train':
          last[r['metric']] = max(last.get(r['metric'], r['step']), r['step'])
      for r in records:
        if _EXCLUDED.search(r['metric']):
          continue
        if (r['split'] == 'train' and train_stride and r['step'] % train_stride
            and r['step'] != last[r['metric']]):
          continue
        key = (setting, r['split'], r['metric'], int(r['step']))
        if (key, seed) in seen:  # A duplicate line: the last one wins below.
          groups[key][seed] = _float(r['value'])
          continue
        seen.add((key, seed))
        groups.setdefault(key, {})[seed] = _float(r['value'])
  rows = []
  for key in sorted(groups):
    setting, split, metric, step = key
    rows.append(dict(setting=setting, split=split, metric=metric, step=step,
                     **_stats(list(groups[key].values()))))
  return rows


class Table:
  """Look-ups in aggregated rows."""

  def __init__(self, rows):
    self.rows = list(rows)
    self._index = {}
    for r in self.rows:
      self._index.setdefault((r['setting'], r['split'], r['metric']), {})[int(r['step'])] = r

  def settings(self):
    return sorted({r['setting'] for r in self.rows})

  def curve(self, setting, metric, split='eval'):
    """{step: row} (empty if absent)."""
    return self._index.get((setting, split, metric), {})

  def first(self, setting, metric, split='eval'):
    c = self.curve(setting, metric, split)
    return c[min(c)] if c else None

  def final(self, setting, metric, split='eval'):
    c = self.curve(setting, metric, split)
    return c[max(c)] if c else None

  def n_seeds(self, setting):
    """Seeds behind the setting's last evaluation (0 if none)."""
    ns = [self.final(setting, m)['n'] for (s, sp, m) in self._index if s == setting
          and sp == 'eval']
    return max(ns, default=0)

  def metrics(self, setting, split='eval'):
    return sorted(m for (s, sp, m) in self._index if s == setting and sp == split)

  @classmethod
  def from_csv(cls, path):
    with open(path) as f:
      rows = list(csv.DictReader(f))
    for r in rows:
      for k in ('step', 'n', 'n_nonfinite'):
        r[k] = int(r[k])
      for k in ('mean', 'sd', 'min', 'max'):
        r[k] = _float(r[k])
    return cls(rows)


def _fmt_csv(value):
  if isinstance(value, float):
    return format(value, '.7g')
  return value


def csv_text(rows):
  """The rows as CSV text (CSV_COLUMNS; floats with 7 significant digits)."""
  out = io.StringIO()
  w = csv.writer(out, lineterminator='\r\n')
  w.writerow(CSV_COLUMNS)
  for r in rows:
    w.writerow([_fmt_csv(r[c]) for c in CSV_COLUMNS])
  return out.getvalue()


def write_csv(rows, path):
  """Replaces ``path`` with the rows as CSV, atomically (``files.write_atomic``)."""
  files.write_atomic(path, csv_text(rows))


def _json_safe(obj):
  if isinstance(obj, float) and not math.isfinite(obj):
    return str(obj)
  if isinstance(obj, dict):
    return {str(k): _json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_json_safe(v) for v in obj]
  if isinstance(obj, np.generic):
    return _json_safe(obj.item())
  return obj


def inventory(runs, planned):
  """Per setting: planned seeds and the state of each run.

  Args:
    runs: {setting: {seed: run}} (load_runs).
    planned: list of (setting, seed) of the plan (may be empty).
  Returns:
    {setting: {'planned': [seeds], 'finished': [...], 'partial': {seed: last eval step},
               'missing': [...], 'degenerate': {seed: [reasons]}}}; failed runs are marked
    by the caller (runs.read_failures). A degenerate run (final_metrics.json 'status':
    'degenerate': every step skipped, no weight changed, or a loss that did not fall, where
    the loss is the objective descended: ``runs.recorded_degenerate_reasons``) is
    finished and counted in the aggregates; the report lists it apart so that nobody reads
    it as an ordinary result.
  """
  out = {}
  for setting, seed in planned:
    out.setdefault(setting, {'planned': [], 'finished': [], 'partial': {}, 'missing': []})
    out[setting]['planned'].append(seed)
  for setting, by_seed in runs.items():
    out.setdefault(setting, {'planned': [], 'finished': [], 'partial': {}, 'missing': []})
  for setting, entry in out.items():
    by_seed = runs.get(setting, {})
    for seed in sorted(set(entry['planned']) | set(by_seed)):
      run = by_seed.get(seed)
      if run and run['finished']:
        entry['finished'].append(seed)
        reasons = runs_lib.recorded_degenerate_reasons(run.get('final'), run.get('config'))
        if reasons:
          entry.setdefault('degenerate', {})[seed] = reasons
      elif run and (run['records'] or run['config']):
        steps = [r['step'] for r in run['records'] if r['split'] == 'eval']
        entry['partial'][seed] = max(steps) if steps else None
      else:
        entry['missing'].append(seed)
  return out

