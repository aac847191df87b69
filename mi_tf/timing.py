"""Wall-time accounting of a run: named seconds accumulated over calls, and the process's start.

Only timing: nothing measured here feeds a result. The training loop (``mi_tf.train_lib``)
writes the split into ``metrics.jsonl`` (``time/<part>_seconds``) and into the 'time' dict of
``final_metrics.json``; the evaluation (``mi_tf.evaluation``, the tasks, ``mi_tf.data``) times
its parts with ``EVAL_TIMINGS.timed(name)``. No TensorFlow import.
"""

import contextlib
import os
import time

# Prefix of the wall-time split's keys (``time/<part>_seconds`` in metrics.jsonl; the 'time'
# dict of final_metrics.json). They end in 'seconds', so the report's aggregation skips them.
TIME_PREFIX = 'time/'


class Timings:
  """Named wall-clock seconds, accumulated over calls of ``timed(name)``.

  Only timing: nothing measured here feeds a result. Parts timed inside one another are
  each counted in full (callers time disjoint parts).
  """

  def __init__(self):
    self.seconds = {}

  @contextlib.contextmanager
  def timed(self, name):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.add(name, time.perf_counter() - start)

  def add(self, name, seconds):
    self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

  def update(self, seconds):
    """Adds every entry of a dict name -> seconds."""
    for name, value in seconds.items():
      self.add(name, value)

  def take(self):
    """The seconds accumulated so far (a dict), and starts again from none."""
    out, self.seconds = self.seconds, {}
    return out


# The parts of one evaluation (``mi_tf.evaluation.timed`` and the tasks' evaluate); the
# training loop takes them after each evaluation.
EVAL_TIMINGS = Timings()


def process_start_time():
  """time.time() at which this process started (Linux /proc), or None where unknown."""
  try:
    with open('/proc/self/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    with open('/proc/stat') as f:
      boot = next(float(line.split()[1]) for line in f if line.startswith('btime'))
    return boot + float(fields[19]) / os.sysconf('SC_CLK_TCK')
  except (OSError, IndexError, ValueError, StopIteration):
    return None
