#!/usr/bin/env python
"""The benchmark suite: prints tables (and a JSON file); NOT a timed test.

  TFDS_DATA_DIR=../shared/data/tensorflow_datasets python benchmarks/run_benchmarks.py \
      --output=benchmarks/results.json            # full (~10 min on 2 idle cores)
  python benchmarks/run_benchmarks.py --quick     # smoke check (tiny sizes, ~1-2 min)

Sections (each in the same process, so ratios compare like with like):
  peak      float32 matmul GFLOP/s (n x n @ n x n, median of repeats): the machine's peak.
  overhead  an EMPTY task through train_lib.train: per-step cost of the loop machinery.
  train     steps/s at batch 128 of every experiment's model, run through
            launch.train_with_gin on its own gin file (the real inner tf.range loop);
            steps/s is the median over log windows after the first (which holds tracing).
            FLOPs of one step: the registered flops statistics of every op of the step's
            concrete-function graph (what tf.compat.v1.profiler float_operation sums), plus
            analytic counts for Conv2DBackpropInput/Filter, which have none registered.
  variants  train.jit_compile=True, and Keras mixed_bfloat16, for some models.
  data      mi_tf.data training stream: batches/s of 128, against the fastest consumer.
  probe     paper protocol (SAGA tol=0.1) vs the converged probe (mi_tf.probe), pixels and
            learned features of finished runs' exports.
  breakdown where the RealNVP step's time goes (sec3_1_realnvp.gin, batch 128): the full step,
            the forward loss alone, forward + gradients without the update, the Adam update
            alone (the task's FusedAdam, and Keras's own Adam), and the step's dense-layer
            matmuls alone (same shapes, no TFP/Keras).
  walltime  single-seed wall times of the finished MNIST runs (read only, /work/runs).
"""

import argparse
import faulthandler
import glob
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import gin  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mi_tf import data as data_lib  # noqa: E402
from mi_tf import probe as probe_lib  # noqa: E402
from mi_tf.tasks import base as tasks_lib  # noqa: E402
from mi_tf import train_lib  # noqa: E402
from mi_tf import launch  # noqa: E402,F401  (registers every configurable)

GIN = os.path.join(REPO, 'gin')

# (label, gin file, steps per log window): windows sized to a few seconds each at full speed.
MODELS = (
    ('MLP + bilinear (3.2)', 'sec3_2_critics_bilinear_infonce.gin', 500),
    ('MLP + separable (3.2)', 'sec3_2_critics_separable_infonce.gin', 500),
    ('MLP + concat (3.2)', 'sec3_2_critics_concat_infonce.gin', 200),
    ('MLP t=2 (3.3)', 'sec3_3_encoders_mlp_infonce_t2.gin', 500),
    ('ConvNet t=2 (3.3)', 'sec3_3_encoders_convnet_infonce_t2.gin', 100),
    ('residual MLP (3.1)', 'sec3_1_resmlp.gin', 200),
    ('RealNVP InfoNCE (3.1)', 'sec3_1_realnvp.gin', 30),
    ('adversarial RealNVP (3.1)', 'sec3_1_adversarial.gin', 5),
    ('Sec 4 toy critic', 'sec4_noniid.gin', 1000),
)
JIT_VARIANTS = ('sec3_1_realnvp.gin', 'sec3_2_critics_bilinear_infonce.gin',
                'sec3_3_encoders_convnet_infonce_t2.gin', 'sec3_1_resmlp.gin')
BF16_VARIANTS = ('sec3_1_realnvp.gin', 'sec3_2_critics_bilinear_infonce.gin')

# Small evaluations: the benchmark times the training windows, not the (per-1000-step) eval.
EVAL_BINDINGS = (
    "ImageHalves.probe_train_split = 'train[:1000]'",
    "ImageHalves.test_split = 'test[:1000]'",
    'MIMaximization.train_estimate_examples = 1000',
    'MIMaximization.condition_number_examples = 0',
    'AdversarialInvertible.warmup_steps = 5',
    'GaussianToy.eval_batches = 5',
)


def median(values):
  return float(statistics.median(values)) if values else float('nan')


def table(title, header, rows):
  print(f'\n## {title}\n')
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for row in rows:
    print('| ' + ' | '.join(str(c) for c in row) + ' |')
  sys.stdout.flush()


# ---------------------------------------------------------------- peak
def matmul_peak(n, repeats, dtype=tf.float32):
  """GFLOP/s of an n x n @ n x n matmul in ``dtype`` (2 n^3 flops), median over repeats, and
  the times."""
  a = tf.cast(tf.random.normal((n, n)), dtype)
  b = tf.cast(tf.random.normal((n, n)), dtype)
  fn = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
  fn(a, b).numpy()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(a, b).numpy()
    times.append(time.perf_counter() - start)
  return 2 * n**3 / median(times) / 1e9, times


# ---------------------------------------------------------------- step FLOPs
def _conv_backprop_flops(op):
  """2 * |out_backprop| * kh * kw * c_in: each backprop of a conv costs its forward's flops."""
  filter_shape = (op.inputs[1].shape if op.type == 'Conv2DBackpropInput'
                  else op.outputs[0].shape)
  out_backprop = op.inputs[2].shape
  if not (filter_shape.is_fully_defined() and out_backprop.is_fully_defined()):
    return 0
  kh, kw, c_in, _ = filter_shape.as_list()
  return 2 * out_backprop.num_elements() * kh * kw * c_in


def graph_flops(graph):
  """(registered flops, analytic conv-backprop flops, op types without stats) of a graph."""
  from tensorflow.python.framework import ops as ops_lib  # pylint: disable=g-import-not-at-top
  registered, analytic, unknown = 0, 0, set()
  for op in graph.get_operations():
    if op.type in ('Conv2DBackpropInput', 'Conv2DBackpropFilter'):
      analytic += _conv_backprop_flops(op)
      continue
    try:
      stats = ops_lib.get_stats_for_node_def(graph, op.node_def, 'flops')
    except (ValueError, TypeError):
      stats = None
    if stats is not None and stats.value:
      registered += stats.value
    elif op.type in ('MatMul', 'BatchMatMulV2', 'Conv2D', 'Einsum'):
      unknown.add(op.type)
  return registered, analytic, sorted(unknown)


def _parse(gin_file, bindings):
  launch.parse_gin([os.path.join(GIN, gin_file)], bindings)


def built_task(gin_file, bindings, batch_size=128, query=()):
  """(task built at batch_size with seed 0, its first batch, {name: gin value for query})."""
  _parse(gin_file, bindings)
  try:
    task = gin.query_parameter('train.task').scoped_configurable_fn()
    values = {name: gin.query_parameter(name) for name in query}
    tf.keras.utils.set_random_seed(0)
    task.check_inputs()
    task.build(batch_size, 0)
    batch = next(iter(task.dataset_fn(batch_size, 0, 0)(None)))
    return task, batch, values
  finally:
    gin.clear_config()


def step_flops(gin_file, bindings, batch_size=128):
  """FLOPs of one training step (task.train_step at batch 128) of a gin file's task."""
  task, batch, _ = built_task(gin_file, bindings, batch_size)
  return graph_flops(tf.function(task.train_step).get_concrete_function(batch).graph)


# ---------------------------------------------------------------- training steps/s
def train_steps_per_second(gin_file, window, num_windows, extra=()):
  """Median steps/s over log windows 2..num_windows of a real train_lib run (+ first window)."""
  steps = window * num_windows
  bindings = EVAL_BINDINGS + (
      f'train.num_steps = {steps}', f'train.log_every = {window}',
      f'train.eval_every = {steps}', f'train.checkpoint_every = {steps}') + tuple(extra)
  with tempfile.TemporaryDirectory(prefix='mi_tf_bench_') as model_dir:
    start = time.time()
    launch.train_with_gin(model_dir, [os.path.join(GIN, gin_file)], bindings)
    total = time.time() - start
    rates = []
    with open(os.path.join(model_dir, 'metrics.jsonl')) as f:
      for line in f:
        rec = json.loads(line)
        if rec['split'] == 'train' and rec['metric'] == 'steps_per_second':
          rates.append(rec['value'])
  return median(rates[1:]), rates, total


class EmptyTask(tasks_lib.Task):
  """A task whose step does nothing: measures the training loop's own per-step cost."""

  name = 'empty'

  def build(self, global_batch_size, seed):
    self.v = tf.Variable(0.0)

  def dataset_fn(self, global_batch_size, seed, start_step):
    return lambda ctx: tf.data.Dataset.from_tensors(
        {'x': tf.zeros((global_batch_size, 1))}).repeat()

  def trackables(self):
    return {'v': self.v}

  def train_step(self, batch):
    loss = tf.reduce_sum(batch['x'])
    return {'loss': loss, 'grad_norm': loss, 'finite': tf.constant(1.0)}

  def evaluate(self, step, final=False):
    del step, final
    return {}


def empty_step_rate(window, num_windows):
  with tempfile.TemporaryDirectory(prefix='mi_tf_bench_') as model_dir:
    gin.clear_config()
    train_lib.train(model_dir, task=EmptyTask(), num_steps=window * num_windows,
                    log_every=window, eval_every=window * num_windows,
                    checkpoint_every=window * num_windows)
    rates = [json.loads(line)['value'] for line in open(os.path.join(model_dir, 'metrics.jsonl'))
             if '"steps_per_second"' in line]
  return median(rates[1:]), rates


# ---------------------------------------------------------------- data pipeline
def pipeline_rate(noise_std, num_batches, repeats):
  """Batches/s of 128 of the training stream (mi_tf.data.train_dataset), consumed eagerly."""
  ds = data_lib.train_dataset('mnist', 'train', batch_size=128, seed=0, noise_std=noise_std)
  it = iter(ds)
  for _ in range(20):
    next(it)
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(num_batches):
      next(it)
    rates.append(num_batches / (time.perf_counter() - start))
  return median(rates), rates


# ---------------------------------------------------------------- probe
def probe_comparison(name, f_tr, y_tr, f_te, y_te, repeats, variants):
  rows = []
  for label, fn in variants:
    results = [fn(f_tr, y_tr, f_te, y_te) for _ in range(repeats)]
    secs = [r['seconds'] for r in results]
    r = results[-1]
    rows.append({'features': name, 'probe': label, 'seconds': median(secs),
                 'seconds_all': secs, 'test_accuracy': r['test_accuracy'],
                 'train_accuracy': r['train_accuracy'], 'n_iter': r.get('n_iter'),
                 'n_evaluations': r.get('n_evaluations'), 'objective': r.get('objective'),
                 'converged': r.get('converged')})
  return rows


def probe_variants(pixels, include_tfp):
  """The probes compared: the paper's SAGA, the converged L-BFGS fit, its 'fast' protocol
  (stopped at probe.FAST_TOLERANCE); on pixels also the XLA and (optionally) tfp solvers."""
  variants = [
      ('paper (SAGA tol=0.1)', probe_lib.linear_probe),
      ('converged (L-BFGS armijo, f64)', probe_lib.converged_probe),
      ('fast (L-BFGS armijo, f64, tol %g)' % probe_lib.FAST_TOLERANCE,
       lambda *a: probe_lib.fit_probe(*a, protocol='fast')),
  ]
  if pixels:
    variants.append(('converged (L-BFGS armijo, f64, XLA)',
                     lambda *a: probe_lib.converged_probe(*a, jit_compile=True)))
  if include_tfp:
    variants.append(('converged (tfp L-BFGS HZ, f64)',
                     lambda *a: probe_lib.converged_probe(*a, solver='tfp')))
  return variants


def exported_settings(runs_dir):
  """Every setting of runs_dir with a seed0/export (image encoders: the Sec. 4 toy has none)."""
  return sorted(d for d in os.listdir(runs_dir)
                if os.path.isdir(os.path.join(runs_dir, d, 'seed0', 'export')))


def sklearn_converged(f_tr, y_tr, f_te, y_te):
  """Reference: scikit-learn lbfgs to tol 1e-8 on the same scaled features (slow)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  start = time.time()
  x_tr, x_te = probe_lib.scaled_features(f_tr, f_te)
  clf = LogisticRegression(C=10.0, tol=1e-8, max_iter=20000).fit(x_tr, y_tr)
  return {'seconds': time.time() - start,
          'test_accuracy': float(clf.score(x_te, y_te)),
          'train_accuracy': float(clf.score(x_tr, y_tr)),
          'n_iter': int(np.max(clf.n_iter_))}


def export_features(export_dir, x_tr, x_te):
  from mi_tf import evaluation  # pylint: disable=g-import-not-at-top
  from mi_tf import export as export_lib  # pylint: disable=g-import-not-at-top
  encode, _ = export_lib.load_encoder(export_dir)
  return (evaluation.batched_features(encode, x_tr, 2000),
          evaluation.batched_features(encode, x_te, 2000))


# ---------------------------------------------------------------- RealNVP breakdown
def _time_fn(fn, repeats, warmup=2):
  for _ in range(warmup):
    fn()
  secs = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    secs.append(time.perf_counter() - start)
  return median(secs)


def realnvp_breakdown(gin_file='sec3_1_realnvp.gin', repeats=10, batch_size=128):
  """ms per call of the RealNVP step and of its parts (a measurement, not a profile trace).

  'matmuls only' runs the forward (3) and backward (6) matmuls of every shift MLP of both
  encoders (2 x num_couplings MLPs of widths 196-512-512-196) as plain tf.linalg.matmul on
  random tensors: the FLOP floor of the step without TFP's bijector bookkeeping, the
  permutations, the critic/estimator and the optimizer.
  """
  task, batch, values = built_task(gin_file, EVAL_BINDINGS, batch_size,
                                   query=('RealNVP.num_couplings', 'RealNVP.hidden_units'))
  num_couplings = values['RealNVP.num_couplings']
  hidden = tuple(values['RealNVP.hidden_units'])
  variables = task.variables

  @tf.function
  def full_step():
    return task.train_step(batch)['loss']

  @tf.function
  def forward():
    return task.loss(batch)[0]

  def gradients():
    with tf.GradientTape() as tape:
      loss = task.loss(batch)[0]
    return tape.gradient(loss, variables)

  @tf.function
  def forward_backward():  # Returns a scalar: no 28M-float copy out of the function.
    return tf.linalg.global_norm(gradients())

  grads = [tf.constant(g) for g in tf.function(gradients)()]

  @tf.function
  def update_only():
    return tasks_lib.apply_if_finite(task.optimizer, tf.constant(0.0), grads, variables)[0]

  keras_adam = keras.optimizers.Adam(1e-4)  # Keras 3's own (unfused) update, for comparison.
  keras_adam.build(variables)

  @tf.function
  def keras_update_only():
    return tasks_lib.apply_if_finite(keras_adam, tf.constant(0.0), grads, variables)[0]

  half = 196
  widths = (half,) + hidden + (half,)
  rng = np.random.default_rng(0)
  weights = [[tf.constant(rng.normal(size=(a, b)).astype(np.float32) * 0.01)
              for a, b in zip(widths[:-1], widths[1:])] for _ in range(2 * num_couplings)]
  x0 = tf.constant(rng.normal(size=(batch_size, half)).astype(np.float32))

  @tf.function
  def matmuls_only():
    total = tf.constant(0.0)
    for ws in weights:
      acts = [x0]
      for w in ws:  # forward
        acts.append(tf.nn.relu(tf.linalg.matmul(acts[-1], w)))
      d = acts[-1]
      for w, a in zip(reversed(ws), reversed(acts[:-1])):  # backward: dW and dx
        total += tf.reduce_sum(tf.linalg.matmul(a, d, transpose_a=True)[0])
        d = tf.linalg.matmul(d, w, transpose_b=True)
      total += tf.reduce_sum(d[0])
    return total

  matmul_flops = 2 * num_couplings * 3 * sum(
      2 * batch_size * a * b for a, b in zip(widths[:-1], widths[1:]))
  rows = []
  for name, fn in (('full step (train_step)', full_step), ('forward loss only', forward),
                   ('forward + gradients, no update', forward_backward),
                   ('Adam update only (apply_if_finite, the task\'s %s)'
                    % type(task.optimizer).__name__, update_only),
                   ('Adam update only, keras.optimizers.Adam (unfused)', keras_update_only),
                   ('dense matmuls only (same shapes)', matmuls_only)):
    rows.append({'part': name, 'ms': 1e3 * _time_fn(fn, repeats)})
  full = rows[0]['ms']
  for r in rows:
    r['fraction_of_step'] = r['ms'] / full
  rows[-1]['gflops'] = matmul_flops / (rows[-1]['ms'] * 1e-3) / 1e9
  return {'rows': rows, 'matmul_mflop': matmul_flops / 1e6,
          'num_variables': int(sum(int(np.prod(v.shape)) for v in variables))}


# ---------------------------------------------------------------- wall times
def machine_load():
  """What else the CPUs were doing: the 1/5/15-min load averages, and the other processes that
  are training (a `train.py` or `eval_probe.py` command line) and RUNNING, i.e. not stopped by
  measure_idle.sh's SIGSTOP. BENCHMARKS.md calls a measurement 'idle' when this list is empty."""
  busy = []
  for pid in os.listdir('/proc') if os.path.isdir('/proc') else ():
    if not pid.isdigit() or int(pid) == os.getpid():
      continue
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        cmd = f.read().replace(b'\0', b' ').decode(errors='replace').strip()
      with open(f'/proc/{pid}/stat') as f:
        state = f.read().rsplit(')', 1)[1].split()[0]
    except OSError:  # The process ended while we looked.
      continue
    if state != 'T' and any(p in cmd for p in ('train.py --gin_file', 'eval_probe.py',
                                                 'mi_tf.scripts.train', 'mi_tf.scripts.probe')):
      busy.append({'pid': int(pid), 'command': cmd[:200]})
  return {'time': time.strftime('%Y-%m-%d %H:%M:%S'),
          'load_average': [round(x, 2) for x in os.getloadavg()],
          'other_trainings_running': busy}


def wall_times(runs_dir):
  """Single-seed (seed0) wall times of finished MNIST runs, from final_metrics.json and the
  runner's history (sum of the seconds of all its invocations of that key)."""
  history = {}
  path = os.path.join(runs_dir, 'runner_history.jsonl')
  if os.path.exists(path):
    for line in open(path):
      rec = json.loads(line)
      history.setdefault(rec['key'], []).append(rec)
  rows = []
  for final in sorted(glob.glob(os.path.join(runs_dir, '*', 'seed0', 'final_metrics.json'))):
    setting = final.split(os.sep)[-3]
    if setting.startswith('cifar10'):
      continue
    metrics = json.load(open(final))
    recs = history.get(f'{setting}/seed0', [])
    rows.append({'setting': setting, 'wall_seconds_this_session':
                 metrics.get('wall_seconds_this_session'), 'steps': metrics.get('step'),
                 # All sessions; absent in runs that began before train_lib recorded it.
                 'wall_seconds': metrics.get('wall_seconds'),
                 'runner_seconds': sum(r['seconds'] for r in recs) if recs else None})
  for probe_json in sorted(glob.glob(os.path.join(runs_dir, 'baseline_pixels*', 'seed0',
                                                  'probe_result.json'))):
    setting = probe_json.split(os.sep)[-3]
    recs = [r for r in history.get(f'{setting}/seed0', []) if r['returncode'] == 0]
    seconds = json.load(open(probe_json)).get('seconds')
    rows.append({'setting': setting, 'wall_seconds_this_session': seconds,
                 'wall_seconds': seconds, 'steps': None,
                 'runner_seconds': sum(r['seconds'] for r in recs) if recs else None})
  return rows


# ---------------------------------------------------------------- main
def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--quick', action='store_true', help='tiny sizes: a smoke check only.')
  parser.add_argument('--sections',
                      default='peak,overhead,train,variants,data,probe,breakdown,walltime')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--feature_repeats', type=int, default=2,
                      help='repeats of each probe on learned features (pixels: --repeats).')
  parser.add_argument('--models', default='',
                      help='comma-separated substrings: only gin files containing one.')
  parser.add_argument('--probe_exports', default='sec3_2_critics_bilinear_infonce,'
                      'sec3_3_encoders_mlp_infonce_t2',
                      help="settings in --runs_dir whose seed0/export features are probed "
                           "('all': every one that has an export).")
  parser.add_argument('--skip_pixels', action='store_true',
                      help='probe section: learned features only (no raw-pixel rows).')
  parser.add_argument('--probe_tfp', action='store_true', help='also time the tfp solver.')
  parser.add_argument('--sklearn_reference', action='store_true',
                      help='also fit scikit-learn lbfgs to convergence (minutes).')
  parser.add_argument('--runs_dir', default='/work/runs')
  parser.add_argument('--output', default=None, help='write all results as JSON here.')
  args = parser.parse_args()
  if os.environ.get('MI_TF_BENCH_WATCHDOG'):  # Debugging hangs: dump stacks after N s.
    faulthandler.dump_traceback_later(int(os.environ['MI_TF_BENCH_WATCHDOG']), exit=True)
  logging.basicConfig(level=logging.WARNING)
  logging.getLogger('mi_tf').setLevel(logging.WARNING)
  sections = set(args.sections.split(','))
  quick = args.quick
  out = {'date': time.strftime('%Y-%m-%d %H:%M:%S'), 'argv': sys.argv,
         'machine': {'platform': platform.platform(), 'cpus': os.cpu_count(),
                     'processor': platform.processor()},
         'tensorflow': tf.__version__, 'quick': quick,
         'load_at_start': machine_load()}
  print(f'# mi_tf benchmarks {out["date"]}  TF {tf.__version__}  {os.cpu_count()} CPUs'
        f'{"  (QUICK: smoke sizes, numbers meaningless)" if quick else ""}')
  busy = out['load_at_start']['other_trainings_running']
  print(f'# load average {out["load_at_start"]["load_average"]}; '
        + (f'UNDER LOAD: {len(busy)} other training process(es) running' if busy
           else 'no other training running (idle)'))

  def save():
    out['load_at_end'] = machine_load()
    if args.output:
      with open(args.output, 'w') as f:
        json.dump(out, f, indent=2, default=str)

  peak = float('nan')
  if 'peak' in sections:
    n = 512 if quick else 4096
    peak, times = matmul_peak(n, 3 if quick else 7)
    out['peak'] = {'n': n, 'gflops': peak, 'seconds': times}
    table('Peak: float32 matmul', ['n', 'median s', 'GFLOP/s'],
          [[n, f'{median(times):.3f}', f'{peak:.1f}']])

  if 'overhead' in sections:
    window = 50 if quick else 2000
    rate, rates = empty_step_rate(window, 2 if quick else 4)
    out['overhead'] = {'steps_per_second': rate, 'windows': rates}
    table('Training-loop overhead: an empty step through train_lib.train',
          ['steps/s', 'us/step'], [[f'{rate:.0f}', f'{1e6 / rate:.0f}']])

  extra_quick = ('RealNVP.num_couplings = 2',) if quick else ()
  train_rows = []
  if 'train' in sections:
    for label, gin_file, window in MODELS:
      if args.models and not any(m in gin_file for m in args.models.split(',')):
        continue
      w = max(2, window // 25) if quick else window
      rate, rates, total = train_steps_per_second(gin_file, w, 2 if quick else 4, extra_quick)
      flops, analytic, unknown = step_flops(gin_file, EVAL_BINDINGS + extra_quick)
      total_flops = flops + analytic
      row = {'model': label, 'gin_file': gin_file, 'steps_per_second': rate,
             'windows': rates, 'run_seconds': total, 'step_flops': total_flops,
             'analytic_conv_backprop_flops': analytic, 'ops_without_flops': unknown,
             'gflops': total_flops * rate / 1e9,
             'fraction_of_peak': total_flops * rate / 1e9 / peak}
      train_rows.append(row)
      print(f'  {label}: {rate:.1f} steps/s, {total_flops / 1e6:.1f} MFLOP/step', flush=True)
    out['train'] = train_rows
    save()
    table('Training steps/s at batch 128 (train_lib.train, gin file as shipped)',
          ['model', 'gin', 'steps/s', 'ms/step', 'MFLOP/step', 'GFLOP/s', '% of peak'],
          [[r['model'], r['gin_file'], f'{r["steps_per_second"]:.1f}',
            f'{1e3 / r["steps_per_second"]:.2f}', f'{r["step_flops"] / 1e6:.1f}',
            f'{r["gflops"]:.1f}', f'{100 * r["fraction_of_peak"]:.1f}'] for r in train_rows])

  if 'variants' in sections:
    rows = []
    windows = {g: w for _, g, w in MODELS}
    for kind, files, extra in (('XLA jit_compile', JIT_VARIANTS, ('train.jit_compile = True',)),
                               ('mixed_bfloat16', BF16_VARIANTS, ())):
      for gin_file in files:
        w = max(2, windows[gin_file] // 25) if quick else windows[gin_file]
        base, _, _ = train_steps_per_second(gin_file, w, 2 if quick else 4, extra_quick)
        try:
          if kind == 'mixed_bfloat16':
            import keras  # pylint: disable=g-import-not-at-top
            keras.mixed_precision.set_global_policy('mixed_bfloat16')
          rate, _, _ = train_steps_per_second(gin_file, w, 2 if quick else 4,
                                              extra_quick + extra)
          error = ''
        except Exception as e:  # pylint: disable=broad-except
          rate, error = float('nan'), f'{type(e).__name__}: {str(e).splitlines()[0][:150]}'
        finally:
          if kind == 'mixed_bfloat16':
            keras.mixed_precision.set_global_policy('float32')
        rows.append({'variant': kind, 'gin_file': gin_file, 'baseline_steps_per_second': base,
                     'steps_per_second': rate, 'speedup': rate / base, 'error': error})
        print(f'  {kind} {gin_file}: {base:.1f} -> {rate:.1f} steps/s {error}', flush=True)
    out['variants'] = rows
    save()
    table('Variants (baseline measured again in the same run, just before)',
          ['variant', 'gin', 'baseline steps/s', 'variant steps/s', 'speedup', 'note'],
          [[r['variant'], r['gin_file'], f'{r["baseline_steps_per_second"]:.1f}',
            f'{r["steps_per_second"]:.1f}', f'{r["speedup"]:.2f}', r['error']] for r in rows])

  if 'data' in sections:
    nb = 50 if quick else 1000
    rows = []
    fastest = max((r['steps_per_second'] for r in train_rows
                   if 'toy' not in r['model']), default=float('nan'))
    for noise in (0.0, 0.05):
      rate, rates = pipeline_rate(noise, nb, args.repeats)
      rows.append({'noise_std': noise, 'batches_per_second': rate, 'repeats': rates,
                   'fastest_mnist_consumer': fastest, 'ratio': rate / fastest})
    out['data'] = rows
    save()
    table('Input pipeline (mi_tf.data.train_dataset, batch 128) vs the fastest MNIST consumer',
          ['noise_std', 'batches/s', 'fastest consumer steps/s', 'ratio'],
          [[r['noise_std'], f'{r["batches_per_second"]:.0f}',
            f'{r["fastest_mnist_consumer"]:.0f}', f'{r["ratio"]:.1f}x'] for r in rows])

  if 'probe' in sections:
    n_tr = 5000 if quick else None
    x_tr, _, y_tr = data_lib.eval_halves('mnist', 'train')
    x_te, _, y_te = data_lib.eval_halves('mnist', 'test')
    if n_tr:
      x_tr, y_tr = x_tr[:n_tr], y_tr[:n_tr]
    sources = ([] if args.skip_pixels else
               [('pixels', x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1))])
    settings = (exported_settings(args.runs_dir) if args.probe_exports == 'all'
                else list(filter(None, args.probe_exports.split(','))))
    for setting in settings:
      export = os.path.join(args.runs_dir, setting, 'seed0', 'export')
      if os.path.isdir(export) and not quick:
        try:
          f_tr, f_te = export_features(export, x_tr, x_te)
        except Exception as e:  # pylint: disable=broad-except
          print(f'  {setting}: could not load {export}: {e}')
          continue
        sources.append((setting, f_tr, f_te))
    rows = []
    for name, f_tr, f_te in sources:
      repeats = 1 if quick else (args.repeats if name == 'pixels' else args.feature_repeats)
      rows += probe_comparison(name, f_tr, y_tr, f_te, y_te, repeats,
                               probe_variants(name == 'pixels',
                                              args.probe_tfp and name == 'pixels'))
      if args.sklearn_reference:
        ref = sklearn_converged(f_tr, y_tr, f_te, y_te)
        rows.append({'features': name, 'probe': 'sklearn lbfgs tol=1e-8 (reference)',
                     'seconds': ref['seconds'], 'test_accuracy': ref['test_accuracy'],
                     'train_accuracy': ref['train_accuracy'], 'n_iter': ref['n_iter']})
      print(f'  probe {name} done', flush=True)
      out['probe'] = rows
      save()  # After every feature source: a long section keeps what it measured.
    out['probe'] = rows
    save()
    table('Linear probe (fit on %s train, scored on 10k test)' % (n_tr or '60k'),
          ['features', 'probe', 'median s', 'test acc %', 'train acc %', 'iterations',
           'evaluations'],
          [[r['features'], r['probe'], f'{r["seconds"]:.2f}',
            f'{100 * r["test_accuracy"]:.2f}', f'{100 * r["train_accuracy"]:.2f}',
            r.get('n_iter'), r.get('n_evaluations') or ''] for r in rows])

  if 'breakdown' in sections:
    result = realnvp_breakdown(repeats=2 if quick else 10)
    out['breakdown'] = result
    save()
    table('Where the RealNVP step goes (sec3_1_realnvp.gin, batch 128, %d variables, '
          'dense matmuls %.0f MFLOP)' % (result['num_variables'], result['matmul_mflop']),
          ['part', 'ms per call (median)', 'fraction of the full step', 'GFLOP/s'],
          [[r['part'], f'{r["ms"]:.1f}', f'{r["fraction_of_step"]:.2f}',
            f'{r["gflops"]:.0f}' if 'gflops' in r else ''] for r in result['rows']])

  if 'walltime' in sections and os.path.isdir(args.runs_dir):
    rows = wall_times(args.runs_dir)
    out['walltime'] = rows
    table('Single-seed wall times of finished MNIST runs (measured while other runs shared '
          'the 2 cores)', ['setting', 'steps', 'wall s (all sessions)',
                           'wall s (last session)', 'runner s'],
          [[r['setting'], r['steps']] + [f'{r[k]:.0f}' if r[k] is not None else ''
                                         for k in ('wall_seconds', 'wall_seconds_this_session')]
           + [f'{r["runner_seconds"]:.0f}' if r['runner_seconds'] else ''] for r in rows])
    total = sum(r['wall_seconds'] if r['wall_seconds'] is not None
                else r['wall_seconds_this_session'] or 0 for r in rows)
    print(f'\nsum over {len(rows)} finished settings: {total:.0f} s = {total / 3600:.2f} h')

  save()
  if args.output:
    print(f'\nwritten to {args.output}')


if __name__ == '__main__':
  main()
