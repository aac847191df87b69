#!/usr/bin/env python
"""float32 vs Keras mixed_bfloat16 (train.precision): matmul peaks and training steps/s.

  TFDS_DATA_DIR=../shared/data/tensorflow_datasets python benchmarks/precision.py \
      --output=precision.json

In ONE process (so the ratios compare like with like):
  peak   GFLOP/s of a 4096 x 4096 @ 4096 x 4096 matmul in float32 and in bfloat16 (2 n^3
         flops, median of --matmul_repeats timed calls after one warm-up call).
  train  steps/s at batch 128 of the training step of four settings (their shipped gin files)
         under each policy: the task is built as train_lib.train builds it (gin's train.task,
         task.build inside the default strategy's scope, the policy set first) and timed
         through train_lib's own inner loop (the tf.range loop of train_step calls that every
         run uses). One call traces and warms up; a calibration call sizes the windows to
         about --window_seconds; steps/s is the median of --windows timed windows. FLOPs of
         one step: the registered flops statistics of the float32 step graph, plus analytic
         conv backprops (benchmarks/run_benchmarks.py's count); the same count is used for
         both policies (the casts add no matmul work), % of peak against each policy's own
         matmul peak.

bfloat16 only pays where the CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX); the
flags this machine reports are in the JSON ('cpu_flags').
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

import gin  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import run_benchmarks  # noqa: E402  FLOP counting, machine load, median, table.
from mi_tf import launch  # noqa: E402
from mi_tf import train_lib  # noqa: E402

SETTINGS = (
    ('RealNVP InfoNCE (3.1)', 'sec3_1_realnvp.gin'),
    ('ConvNet t=2 (3.3)', 'sec3_3_encoders_convnet_infonce_t2.gin'),
    ('residual MLP (3.1)', 'sec3_1_resmlp.gin'),
    ('adversarial RealNVP (3.1), 10 head + 1 encoder step', 'sec3_1_adversarial.gin'),
)
POLICIES = ('float32', 'mixed_bfloat16')
# The head warm-up (1,000 head steps before the first encoder step) is not part of the step.
BINDINGS = ('AdversarialInvertible.warmup_steps = 0',)


def cpu_flags():
  """The CPU's vector flags that matter for float32 / bfloat16 matmuls."""
  try:
    with open('/proc/cpuinfo') as f:
      flags = next(line.split(':', 1)[1].split() for line in f if line.startswith('flags'))
  except (OSError, StopIteration):
    return []
  return sorted(f for f in flags if f.startswith(('avx', 'amx', 'fma')))


def _build(gin_file, policy, batch_size):
  """(task, train loop) of a gin file built under ``policy``, as train_lib.train builds it."""
  launch.parse_gin([os.path.join(REPO, 'gin', gin_file)], BINDINGS)
  try:
    task = gin.query_parameter('train.task').scoped_configurable_fn()
    keras.mixed_precision.set_global_policy(policy)
    tf.keras.utils.set_random_seed(0)
    task.check_inputs()
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
      task.build(batch_size, 0)
      step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    iterator = iter(strategy.distribute_datasets_from_function(
        task.dataset_fn(batch_size, 0, 0)))
    loop = train_lib._make_train_loop(  # pylint: disable=protected-access
        strategy, task, iterator, step_var, jit_compile=False, stop_on_nonfinite=False)
    return task, loop
  finally:
    gin.clear_config()
    keras.mixed_precision.set_global_policy('float32')


def _timed(loop, steps):
  start = time.perf_counter()
  sums, _ = loop(tf.constant(steps, tf.int64))
  float(sums['loss'])  # Waits for the steps.
  return time.perf_counter() - start


def steps_per_second(gin_file, policy, batch_size, window_seconds, windows):
  """Median steps/s over ``windows`` timed calls of the inner loop (after trace + warm-up)."""
  task, loop = _build(gin_file, policy, batch_size)
  first = _timed(loop, 2)  # Traces the loop; 2 steps.
  calibration = _timed(loop, 3)
  steps = max(2, int(round(window_seconds * 3 / calibration)))
  rates = [steps / _timed(loop, steps) for _ in range(windows)]
  dtypes = sorted({keras.backend.standardize_dtype(v.dtype) for v in task.g1.variables
                   if keras.backend.is_float_dtype(keras.backend.standardize_dtype(v.dtype))})
  return {'steps_per_second': run_benchmarks.median(rates), 'rates': rates,
          'window_steps': steps, 'first_call_seconds': first,
          'compute_dtype': task.g1.compute_dtype, 'variable_dtypes': dtypes}


def step_flops(gin_file, batch_size):
  """Registered + analytic FLOPs of one float32 training step."""
  task, batch, _ = run_benchmarks.built_task(gin_file, BINDINGS, batch_size)
  registered, analytic, unknown = run_benchmarks.graph_flops(
      tf.function(task.train_step).get_concrete_function(batch).graph)
  return registered + analytic, unknown


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--output', required=True, help='JSON file written at the end.')
  parser.add_argument('--matmul_n', type=int, default=4096)
  parser.add_argument('--matmul_repeats', type=int, default=5)
  parser.add_argument('--window_seconds', type=float, default=4.0)
  parser.add_argument('--windows', type=int, default=3)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--settings', default=','.join(g for _, g in SETTINGS),
                      help='comma-separated gin files (default: the four settings).')
  parser.add_argument('--policies', default=','.join(POLICIES),
                      help='the order in which each setting is timed under the two policies '
                           '(on a machine whose load drifts, run both orders).')
  args = parser.parse_args(argv)
  chosen = [s for s in SETTINGS if s[1] in args.settings.split(',')]
  if sorted(args.policies.split(',')) != sorted(POLICIES):
    parser.error(f'--policies must order {POLICIES}, got {args.policies!r}.')
  out = {'command': ' '.join(sys.argv), 'cpu_flags': cpu_flags(), 'policies': args.policies,
         'load_before': run_benchmarks.machine_load(), 'tensorflow': tf.__version__,
         'keras': keras.__version__, 'batch_size': args.batch_size, 'peak': {}, 'train': []}
  start = time.time()
  for dtype in (tf.float32, tf.bfloat16):
    gflops, times = run_benchmarks.matmul_peak(args.matmul_n, args.matmul_repeats, dtype)
    out['peak'][dtype.name] = {'gflops': gflops, 'seconds': times, 'n': args.matmul_n}
    print(f'peak {dtype.name}: {gflops:.1f} GFLOP/s', flush=True)
  for label, gin_file in chosen:
    flops, unknown = step_flops(gin_file, args.batch_size)
    row = {'setting': label, 'gin': gin_file, 'mflop_per_step': flops / 1e6,
           'ops_without_flops': unknown}
    for policy in args.policies.split(','):
      row[policy] = steps_per_second(gin_file, policy, args.batch_size, args.window_seconds,
                                     args.windows)
      peak = out['peak']['float32' if policy == 'float32' else 'bfloat16']['gflops']
      row[policy]['percent_of_peak'] = (100 * row[policy]['steps_per_second'] * flops / 1e9
                                        / peak)
      print(f'{gin_file} {policy}: {row[policy]["steps_per_second"]:.2f} steps/s',
            flush=True)
    row['bf16_speedup'] = (row['mixed_bfloat16']['steps_per_second']
                           / row['float32']['steps_per_second'])
    out['train'].append(row)
    with open(args.output, 'w') as f:  # Partial results survive a stopped run.
      json.dump(out, f, indent=2)
  out['load_after'] = run_benchmarks.machine_load()
  out['seconds'] = time.time() - start
  run_benchmarks.table(
      f'Matmul peak ({args.matmul_n}^2 @ {args.matmul_n}^2, median of '
      f'{args.matmul_repeats})', ['dtype', 'GFLOP/s'],
      [(k, f'{v["gflops"]:.1f}') for k, v in out['peak'].items()])
  run_benchmarks.table(
      f'Training steps/s at batch {args.batch_size} (median of {args.windows} windows)',
      ['setting', 'gin', 'MFLOP/step', 'float32 steps/s', '% of fp32 peak',
       'mixed_bfloat16 steps/s', '% of bf16 peak', 'bf16 / fp32'],
      [(r['setting'], r['gin'], f'{r["mflop_per_step"]:.0f}',
        f'{r["float32"]["steps_per_second"]:.2f}', f'{r["float32"]["percent_of_peak"]:.1f}',
        f'{r["mixed_bfloat16"]["steps_per_second"]:.2f}',
        f'{r["mixed_bfloat16"]["percent_of_peak"]:.1f}', f'{r["bf16_speedup"]:.2f}')
       for r in out['train']])
  print(f'\ncpu flags: {" ".join(out["cpu_flags"])}; load average before '
        f'{out["load_before"]["load_average"]}, after {out["load_after"]["load_average"]}')
  with open(args.output, 'w') as f:
    json.dump(out, f, indent=2)


if __name__ == '__main__':
  main()
