#!/usr/bin/env python
"""Where a training run's wall time goes, per setting, and a projection to the full run.

  python benchmarks/wall_split.py [--settings=sec3_2_critics_bilinear_infonce,...]
      [--num_steps=200] [--eval_every=100] [--output=wall_split.json]

Runs each setting as a SHORT real run at full data sizes (``python train.py --gin_file=gin/<s>.gin
--gin_bindings='train.num_steps = N' --gin_bindings='train.eval_every = E'``, one process per
setting, in a temporary model_dir), reads the wall-time split the run records
(final_metrics.json 'time', metrics.jsonl ``time/<part>_seconds``) and prints a table:
start-up, tracing of the training loop, ms per training step, one evaluation split into its
parts (the evaluation after step 0 and before the last: no tracing, no converged probe), the
extra cost of the step-0 evaluation, the converged probe, checkpoints and export, and the
projected wall time of the full run of the gin file (its train.num_steps and train.eval_every;
the converged probe at step 0 and at the last evaluation).

The projection assumes every evaluation costs what the middle one of the short run cost and
every step what the short run's steps cost; probe costs vary with the features (SAGA's epochs,
L-BFGS's iterations), so it is an estimate. The machine's load is recorded with each setting.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DEFAULT_SETTINGS = (
    'sec3_2_critics_bilinear_infonce', 'sec3_3_encoders_mlp_infonce_t2',
    'sec3_3_encoders_convnet_infonce_t2', 'sec3_1_resmlp', 'sec3_1_realnvp',
    'sec3_1_adversarial', 'sec4_noniid', 'baseline_supervised_mlp')
# Parts of one evaluation, in the table's order (mi_tf.evaluation.timed and the loop's write).
EVAL_PARTS = ('load_splits', 'encode', 'estimators', 'probe', 'probe_fast', 'probe_knn', 'head',
              'invertibility', 'jacobian', 'write')
# The probes of the first and the last evaluation only (the converged linear and the k-NN one):
# counted apart from the steady evaluation, together as 'probe_fast_two'.
ENDS_ONLY = ('probe_fast', 'probe_knn')


def gin_value(setting, name, default):
  """An integer binding of a gin file or of the files it includes (the last one wins)."""
  value = default

  def scan(path):
    nonlocal value
    with open(path) as f:
      text = f.read()
    for line in text.splitlines():
      m = re.match(r"\s*include\s+'([^']+)'", line)
      if m:
        scan(os.path.join(os.path.dirname(path), m.group(1)))
      m = re.match(rf'\s*{re.escape(name)}\s*=\s*(\d+)', line)
      if m:
        value = int(m.group(1))

  scan(os.path.join(ROOT, 'gin', f'{setting}.gin'))
  return value


def eval_records(model_dir):
  """{step: {metric: value}} of the evaluation records of metrics.jsonl."""
  out = {}
  with open(os.path.join(model_dir, 'metrics.jsonl')) as f:
    for line in f:
      r = json.loads(line)
      if r['split'] == 'eval':
        out.setdefault(r['step'], {})[r['metric']] = r['value']
  return out


def run_setting(setting, num_steps, eval_every, bindings, keep):
  model_dir = tempfile.mkdtemp(prefix=f'wall_split_{setting}_')
  cmd = [sys.executable, os.path.join(ROOT, 'train.py'),
         f'--gin_file={os.path.join(ROOT, "gin", setting + ".gin")}',
         f'--model_dir={model_dir}',
         f'--gin_bindings=train.num_steps = {num_steps}',
         f'--gin_bindings=train.eval_every = {eval_every}']
  cmd += [f'--gin_bindings={b}' for b in bindings]
  load_before = os.getloadavg()
  start = time.time()
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  wall = time.time() - start
  if proc.returncode:
    raise RuntimeError(f'{setting} failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
  with open(os.path.join(model_dir, 'final_metrics.json')) as f:
    final = json.load(f)
  evals = eval_records(model_dir)
  # Every other evaluation value, to compare runs of two code versions (results unchanged).
  values = {str(k): {m: v for m, v in r.items() if not str(m).endswith(
      ('seconds', 'steps_per_second'))} for k, r in sorted(evals.items())}
  if not keep:
    subprocess.run(['rm', '-rf', model_dir], check=False)
  return {'setting': setting, 'command': cmd, 'process_wall_seconds': wall,
          'load_before': load_before, 'load_after': os.getloadavg(),
          'time': final['time'], 'wall_seconds_this_session': final['wall_seconds_this_session'],
          'evals': {str(k): {m: v for m, v in r.items()
                             if m.startswith('time/') or m == 'eval/seconds'}
                    for k, r in sorted(evals.items())},
          'values': values, 'model_dir': model_dir if keep else None}


def summarise(r, num_steps, eval_every, log_every=100, checkpoint_every=1000):
  """Per-part costs of a short run, and the projection of the full run of its gin file."""
  t = r['time']
  steps = t['num_steps']
  first_steps = t['train_first_call_steps']
  rest_steps = max(steps - first_steps, 1)
  ms_per_step = 1000.0 * t.get('train_steps', 0.0) / rest_steps
  trace = t['train_first_call'] - first_steps * ms_per_step / 1000.0
  evals = {int(k): v for k, v in r['evals'].items()}
  eval_steps = sorted(evals)
  middle = [s for s in eval_steps if s not in (eval_steps[0], eval_steps[-1])]
  steady_step = middle[0] if middle else eval_steps[-1]

  def parts(step):
    v = evals[step]
    p = {k: v.get(f'time/{k}_seconds', 0.0) for k in EVAL_PARTS if k != 'write'}
    p['total'] = v['eval/seconds']
    return p

  steady = parts(steady_step)
  for k in ENDS_ONLY:
    steady.pop(k)
  first, last = parts(eval_steps[0]), parts(eval_steps[-1])
  fast = sum(first[k] + last[k] for k in ENDS_ONLY)
  write = t.get('eval/write', 0.0) / max(t['eval/count'], 1)
  first_extra = first['total'] - sum(first[k] for k in ENDS_ONLY) - steady['total']
  n_saves = len([s for s in range(log_every, steps + 1, log_every)
                 if s % checkpoint_every == 0 or s % eval_every == 0 or s == steps])
  ckpt = t.get('checkpoint', 0.0) / max(n_saves, 1)
  other = t.get('other', 0.0)
  out = {'setting': r['setting'], 'startup': t.get('startup'), 'trace': trace,
         'ms_per_step': ms_per_step, 'eval_steady': steady, 'eval_write': write,
         'eval_first_extra': first_extra, 'probe_fast_two': fast, 'checkpoint_each': ckpt,
         'export': t.get('export', 0.0), 'other': other,
         'measured_process_wall': r['process_wall_seconds']}
  full_steps = gin_value(r['setting'], 'train.num_steps', 20000)
  full_every = gin_value(r['setting'], 'train.eval_every', 1000)
  full_evals = full_steps // full_every + 1 + (1 if full_steps % full_every else 0)
  full_saves = len([s for s in range(log_every, full_steps + 1, log_every)
                    if s % checkpoint_every == 0 or s % full_every == 0 or s == full_steps])
  teardown = r['process_wall_seconds'] - (t.get('startup') or 0.0) - r[
      'wall_seconds_this_session']
  proj = {
      'startup': (t.get('startup') or 0.0) + trace + max(teardown, 0.0),
      'train': full_steps * ms_per_step / 1000.0,
      'eval': full_evals * (steady['total'] + write) + first_extra + fast,
      'checkpoint': full_saves * ckpt,
      'export': t.get('export', 0.0),
      'other': other * full_steps / max(steps, 1),
  }
  proj['total'] = sum(proj.values())
  out.update(full_steps=full_steps, full_evals=full_evals, projected=proj)
  return out


def table(summaries):
  head = ('| setting | start-up s | trace s | ms/step | eval s (steady) | '
          + ' | '.join(p for p in EVAL_PARTS if p not in ENDS_ONLY + ('write',))
          + ' | step-0 extra s | 2 fast probes s | ckpt s each | export s | '
            'projected full run: start-up / train / eval / total s | eval share |')
  lines = [head, '|' + '---|' * (head.count('|') - 1)]
  for s in summaries:
    e, p = s['eval_steady'], s['projected']
    cells = [s['setting'], f"{s['startup'] or 0:.1f}", f"{s['trace']:.1f}",
             f"{s['ms_per_step']:.2f}", f"{e['total']:.2f}"]
    cells += [f"{e.get(k, 0.0):.2f}" for k in EVAL_PARTS if k not in ENDS_ONLY + ('write',)]
    cells += [f"{s['eval_first_extra']:.1f}", f"{s['probe_fast_two']:.1f}",
              f"{s['checkpoint_each']:.2f}", f"{s['export']:.1f}",
              f"{p['startup']:.0f} / {p['train']:.0f} / {p['eval']:.0f} / {p['total']:.0f}",
              f"{100 * p['eval'] / p['total']:.0f}%"]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def measure_cuts(repeats=3):
  """Each evaluation cut against the code it replaced, in one process (same load): seconds of
  the first call (tracing) and of later calls, and whether the values are identical.

  invertibility: ``evaluation.invertibility_metrics`` (one tf.function per additive-coupling
  encoder; affine encoders keep the eager loop, so their row shows no gain) against the former
  eager loop, on the 30-coupling RealNVPs of gin/sec3_1_realnvp.gin (additive) and
  gin/sec3_1_adversarial.gin (affine), 1,000 test halves, after a few Adam steps so that the
  flows are not near the identity.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mi_tf import data  # pylint: disable=g-import-not-at-top
  from mi_tf import evaluation  # pylint: disable=g-import-not-at-top
  from mi_tf.encoders import RealNVP  # pylint: disable=g-import-not-at-top

  def eager_invertibility(encoder, x):  # The code before the cut: every batch eagerly.
    return evaluation.invertibility_metrics(encoder, x, graph=False)

  def timed_calls(fn):
    seconds, values = [], None
    for _ in range(repeats):
      start = time.perf_counter()
      values = fn()
      seconds.append(time.perf_counter() - start)
    return seconds, values

  def same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)

  rows = []
  x_te = data.eval_halves('mnist', 'test')[0][:1000]
  for coupling in ('additive', 'affine'):
    tf.keras.utils.set_random_seed(0)
    g = RealNVP(num_couplings=30, hidden_units=(512, 512), coupling=coupling,
                kernel_stddev=1e-4)
    g(tf.constant(x_te[:2]))
    optimizer = tf.keras.optimizers.Adam(1e-3)
    for i in range(3):  # Move the flow away from the identity.
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(g(tf.constant(x_te[i * 64:(i + 1) * 64]))))
      optimizer.apply_gradients(zip(tape.gradient(loss, g.trainable_variables),
                                    g.trainable_variables))
    old_s, old = timed_calls(lambda g=g: eager_invertibility(g, x_te))
    new_s, new = timed_calls(lambda g=g: evaluation.invertibility_metrics(g, x_te))
    rows.append({'cut': f'invertibility, {coupling} RealNVP 30 couplings', 'before': old_s,
                 'after': new_s, 'identical': same(old, new)})
  print('| cut | before: 1st call / later calls s | after: 1st call / later calls s | '
        'identical values |')
  print('|---|---|---|---|')
  for r in rows:
    fmt = lambda v: f"{v[0]:.2f} / {', '.join(f'{x:.2f}' for x in v[1:])}"  # noqa: E731
    print(f"| {r['cut']} | {fmt(r['before'])} | {fmt(r['after'])} | {r['identical']} |")
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--settings', default=','.join(DEFAULT_SETTINGS),
                      help='comma-separated gin file names (without gin/ and .gin).')
  parser.add_argument('--num_steps', type=int, default=200)
  parser.add_argument('--eval_every', type=int, default=100)
  parser.add_argument('--steps_for', action='append', default=[],
                      help='per-setting override SETTING=NUM_STEPS:EVAL_EVERY (repeatable), '
                           'e.g. sec3_1_realnvp=40:20 (log_every must divide EVAL_EVERY).')
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help='extra bindings for every run (repeatable).')
  parser.add_argument('--output', default=None, help='write the raw results as JSON here.')
  parser.add_argument('--keep', action='store_true', help='keep the model_dirs.')
  parser.add_argument('--cuts', action='store_true',
                      help='only time each evaluation cut against the code it replaced.')
  args = parser.parse_args(argv)
  if args.cuts:
    rows = measure_cuts()
    if args.output:
      with open(args.output, 'w') as f:
        json.dump({'date': time.strftime('%Y-%m-%d %H:%M:%S'), 'load': os.getloadavg(),
                   'cuts': rows}, f, indent=1)
    return 0
  overrides = {}
  for item in args.steps_for:
    name, spec = item.split('=')
    n, e = spec.split(':')
    overrides[name] = (int(n), int(e))
  results, summaries = [], []
  for setting in [s for s in args.settings.split(',') if s]:
    n, e = overrides.get(setting, (args.num_steps, args.eval_every))
    bindings = list(args.gin_bindings)
    if e % 100:
      bindings.append(f'train.log_every = {e}')
    r = run_setting(setting, n, e, bindings, args.keep)
    log_every = e if e % 100 else 100
    s = summarise(r, n, e, log_every=log_every)
    results.append(dict(r, num_steps=n, eval_every=e, summary=s))
    summaries.append(s)
    print(f"{setting}: {r['process_wall_seconds']:.0f} s wall "
          f"(load {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f})", flush=True)
    if args.output:
      with open(args.output, 'w') as f:
        json.dump({'date': time.strftime('%Y-%m-%d %H:%M:%S'), 'cpus': os.cpu_count(),
                   'results': results}, f, indent=1)
  print(table(summaries))
  return 0


if __name__ == '__main__':
  sys.exit(main())
