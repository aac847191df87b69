"""tf.distribute helpers: choosing a strategy, and the cross-replica gather of negatives.

InfoNCE and NWJ score each positive against the negatives of the WHOLE global batch, so each
replica needs the representations of all replicas. ``ReplicaContext.all_gather`` fails under
MultiWorkerMirroredStrategy on this stack ("destinations can not be empty", TF 2.21, two
local CPU workers); ``cross_replica_concat`` builds
the concatenation from a scatter into a zero tensor plus an all-reduce SUM (the pattern of
SimCLR's TF2 code), which is differentiable: the gradient of an all-reduce is the all-reduce of
the gradients.

Starting a cluster never hangs silently: MultiWorkerMirroredStrategy blocks in TensorFlow's
C++ collective setup until every worker of TF_CONFIG has joined, deaf to SIGINT (Python runs
handlers only between bytecodes) and to SIGTERM (the coordination service installs its own
handler), for as long as a peer is missing. So ``make_strategy`` first waits in Python until
every peer's port answers (saying which it waits for, stopping on SIGTERM/SIGINT, giving up
after a timeout), and only then creates the strategy, under a watcher thread that ends the
process if that still blocks (``run_abandonable``). The same holds for a TPU address.
"""

import contextlib
import json
import logging
import os
import select
import signal
import socket
import threading
import time

import tensorflow as tf

_LOG = logging.getLogger(__name__)

STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')
# How long a multi-worker run waits for its peers (and then for TensorFlow's collective setup),
# and a TPU run for its TPU, before it gives up: ``cluster_timeout`` or make_strategy's
# ``timeout_seconds`` change it (mi-tf-train --cluster_timeout).
DEFAULT_CLUSTER_TIMEOUT_SECONDS = 300.0
PROGRESS_EVERY_SECONDS = 10.0  # A line saying what it still waits for, this often.
_POLL_SECONDS = 0.5
# The TF_CONFIG jobs that take part in MultiWorkerMirroredStrategy's collectives.
_COLLECTIVE_JOBS = ('chief', 'worker')
_timeout_seconds = [DEFAULT_CLUSTER_TIMEOUT_SECONDS]


class ClusterError(RuntimeError):
  """A peer of a multi-worker run, or the TPU, could not be reached in time (or at all)."""


@contextlib.contextmanager
def cluster_timeout(seconds):
  """Within the block, ``make_strategy`` waits at most ``seconds`` (None: the default) for
  the peers or the TPU, then at most as long for TensorFlow's setup."""
  old = _timeout_seconds[0]
  if seconds is not None:
    if not seconds > 0:
      raise ValueError(f'The cluster timeout must be a positive number of seconds, got '
                       f'{seconds!r}.')
    _timeout_seconds[0] = float(seconds)
  try:
    yield
  finally:
    _timeout_seconds[0] = old


def make_strategy(distribution='default', tpu=None, timeout_seconds=None):
  """Returns the tf.distribute strategy for a run.

  A multi-worker run first waits for its peers: it says which addresses of TF_CONFIG it waits
  for (and, every PROGRESS_EVERY_SECONDS, which still do not answer), stops on SIGTERM or
  SIGINT (exit status 128 + signal), and gives up with ``ClusterError`` after
  ``timeout_seconds``; only then does it create the strategy, whose collective setup blocks in
  TensorFlow, and which is abandoned (one ERROR line, exit status 1, or 128 + signal) if it
  takes longer than ``timeout_seconds`` too. A TPU address (grpc://host:port) must resolve
  and answer in the same way.

  Args:
    distribution: 'default' (one device), 'mirrored' (all local GPUs, or all logical CPU
      devices when there is no GPU), 'multi_worker' (MultiWorkerMirroredStrategy from the
      TF_CONFIG environment variable) or 'tpu'.
    tpu: Cloud TPU name or address (grpc://...), used with 'tpu' (and implies it).
    timeout_seconds: see above; None: the ``cluster_timeout`` in force (default
      DEFAULT_CLUSTER_TIMEOUT_SECONDS).

  Raises:
    ValueError: unknown distribution, or no (or a malformed) TF_CONFIG for 'multi_worker'.
    ClusterError: a peer or the TPU did not answer in time, or the TPU was not found.
  """
  timeout = float(timeout_seconds or _timeout_seconds[0])
  if tpu:
    distribution = 'tpu'
  if distribution not in STRATEGIES:
    raise ValueError(f'Unknown distribution {distribution!r}; choose one of {STRATEGIES}.')
  if distribution == 'default':
    return tf.distribute.get_strategy()
  if distribution == 'mirrored':
    gpus = tf.config.list_logical_devices('GPU')
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  if distribution == 'multi_worker':
    if 'TF_CONFIG' not in os.environ:
      raise ValueError('distribution=multi_worker needs the TF_CONFIG environment variable '
                       '(cluster and task of this worker); see README.md.')
    me, peers = cluster_peers(os.environ['TF_CONFIG'])
    if peers:
      _LOG.info('This is %s of a cluster of %d (TF_CONFIG); waiting up to %.0f s for %s.',
                _name(me), len(peers) + 1, timeout, ', '.join(_name(p) for p in peers))
      wait_for_addresses(peers, timeout, listen_on=me[2])
    return run_abandonable(tf.distribute.MultiWorkerMirroredStrategy, timeout,
                           "TensorFlow's collective setup" + ''.join(
                               f' with {", ".join(_name(p) for p in peers)}' if peers else ''))
  return _tpu_strategy(tpu, timeout)


def _tpu_strategy(tpu, timeout):
  """TPUStrategy of ``tpu``; a grpc:// address must resolve and answer first."""
  if tpu and tpu.startswith('grpc://'):
    address = tpu[len('grpc://'):]
    host = address.rsplit(':', 1)[0]
    resolve(host, timeout, what=f'the TPU address {tpu}')
    wait_for_addresses([('the TPU', None, address)], timeout, advice=(
        '(--tpu). Check the address and that the TPU is up, or wait longer: mi-tf-train '
        '--cluster_timeout=SECONDS.'))
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or '')
  except (OSError, ValueError, RuntimeError) as e:
    raise ClusterError(f'Cannot find the TPU {tpu or "(none given)"!r}: {e}. Give its name '
                       '(on a Cloud TPU VM: local) or its grpc://host:port address with '
                       '--tpu.') from None

  def connect():
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    _LOG.info('TPU devices: %s', tf.config.list_logical_devices('TPU'))
    return tf.distribute.TPUStrategy(resolver)

  return run_abandonable(connect, timeout, f'connecting to the TPU {tpu or ""}'.strip())


def cluster_peers(tf_config):
  """(this task, [the other tasks]) of a TF_CONFIG string, each (job, index, 'host:port'),
  over the jobs that take part in the collectives (chief, worker).

  Raises:
    ValueError: TF_CONFIG is not JSON, or names no cluster or no task of it.
  """
  try:
    config = json.loads(tf_config)
    cluster, task = config['cluster'], config['task']
    me = (task['type'], int(task.get('index', 0)))
    tasks = [(job, i, address) for job in _COLLECTIVE_JOBS
             for i, address in enumerate(cluster.get(job, []))]
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(f'TF_CONFIG is not a cluster and task of it ({type(e).__name__}: {e}): '
                     f'{tf_config[:200]!r}; see README.md.') from None
  mine = [t for t in tasks if t[:2] == me]
  if not mine:
    raise ValueError(f'TF_CONFIG\'s task {me[0]} {me[1]} is not in its cluster '
                     f'{ {j: cluster.get(j) for j in _COLLECTIVE_JOBS if j in cluster} }.')
  return mine[0], [t for t in tasks if t[:2] != me]


def _name(task):
  job, index, address = task
  return f'{job} at {address}' if index is None else f'{job} {index} at {address}'


def _split_address(address):
  host, _, port = address.rpartition(':')
  if not host or not port.isdigit():
    raise ValueError(f'{address!r} is not a host:port address.')
  return host.strip('[]'), int(port)


def address_answers(address, timeout=1.0):
  """Whether something accepts TCP connections at 'host:port'."""
  try:
    socket.create_connection(_split_address(address), timeout=timeout).close()
    return True
  except OSError:
    return False


def resolve(host, timeout, what):
  """Resolves ``host`` within ``timeout`` seconds, else ClusterError naming ``what``."""
  result = {}

  def lookup():
    try:
      result['ok'] = socket.getaddrinfo(host, None)
    except OSError as e:
      result['error'] = e

  thread = threading.Thread(target=lookup, daemon=True)
  thread.start()
  thread.join(timeout)
  if 'ok' not in result:
    why = result.get('error', f'no answer in {timeout:.0f} s')
    raise ClusterError(f'The host of {what} does not resolve: {host!r} ({why}).')


_PEER_ADVICE = ('(from TF_CONFIG). Start {them} (the same command with its TF_CONFIG task), '
                'check the addresses and firewalls, or wait longer: mi-tf-train '
                '--cluster_timeout=SECONDS.')


def wait_for_addresses(tasks, timeout, listen_on=None, advice=_PEER_ADVICE):
  """Waits until every task (job, index, 'host:port') accepts connections.

  Says every PROGRESS_EVERY_SECONDS which ones still do not answer; SIGTERM or SIGINT stop
  the wait (SystemExit(128 + signal), after a line saying so).

  Args:
    tasks: [(job, index, address)] to wait for (index None: a single one, e.g. a TPU).
    timeout: seconds before ClusterError.
    listen_on: this task's own address: while it waits, a placeholder socket listens on its
      port, so that peers waiting in the same way see this task up (each task's TensorFlow
      server only starts with the strategy, after the wait). Closed before returning.
    advice: the end of the timeout's message ('{them}': 'it' or 'them').
  """
  placeholder = _listen(listen_on) if listen_on else None
  start = time.monotonic()
  last_report = start
  waiting = list(tasks)
  try:
    with _signals_stop(lambda: 'waiting for ' + ', '.join(_name(t) for t in waiting)):
      while True:
        waiting = [t for t in waiting if not address_answers(t[2], timeout=_POLL_SECONDS)]
        if not waiting:
          return
        now = time.monotonic()
        if now - start >= timeout:
          raise ClusterError(
              f'Gave up after {timeout:.0f} s: no answer from '
              + ', '.join(_name(t) for t in waiting) + ' '
              + advice.format(them='them' if len(waiting) > 1 else 'it'))
        if now - last_report >= PROGRESS_EVERY_SECONDS:
          _LOG.info('Still waiting (%.0f of %.0f s) for %s.', now - start, timeout,
                    ', '.join(_name(t) for t in waiting))
          last_report = now
        time.sleep(_POLL_SECONDS)
  finally:
    if placeholder is not None:
      placeholder.close()


def _listen(address):
  """A listening socket on the port of ``address`` (never accepts: the kernel completes the
  peers' connection checks)."""
  _, port = _split_address(address)
  try:
    if socket.has_dualstack_ipv6():
      return socket.create_server(('', port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(('', port))
  except OSError as e:
    raise ClusterError(f'This task\'s port {port} ({address}, TF_CONFIG) cannot be used: {e}. '
                       'Is another worker (or an old one) still running there?') from None


@contextlib.contextmanager
def _signals_stop(doing):
  """Within the block SIGTERM and SIGINT raise SystemExit(128 + signal) after a WARNING
  naming ``doing()``. Outside the main thread: a no-op."""
  def stop(signum, frame):  # pylint: disable=unused-argument
    _LOG.warning('Received %s while %s: stopped (nothing was written).',
                 signal.Signals(signum).name, doing())
    raise SystemExit(128 + signum)

  old = {}
  try:
    for signum in (signal.SIGTERM, signal.SIGINT):
      old[signum] = signal.signal(signum, stop)
  except ValueError:  # Not the main thread.
    pass
  try:
    yield
  finally:
    for signum, handler in old.items():
      signal.signal(signum, handler)


def run_abandonable(fn, timeout, what):
  """``fn()``, which may block in TensorFlow's C++ without looking at Python's signals; the
  process ends (one ERROR line, exit status 1) if it takes longer than ``timeout`` seconds,
  or on SIGTERM or SIGINT (a WARNING line, exit status 128 + signal).

  A watcher thread does it: Python runs signal handlers only between bytecodes of the main
  thread, but writes each signal's number to the wakeup fd (``signal.set_wakeup_fd``) at
  once. (TensorFlow's coordination service installs its own SIGTERM handler while it starts;
  a SIGTERM after that point is TensorFlow's, and the timeout still ends the wait.)
  """
  done = threading.Event()
  received = []
  reader, writer = socket.socketpair()
  writer.setblocking(False)
  old_handlers, old_wakeup = {}, None
  try:
    old_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
      old_handlers[signum] = signal.signal(signum, lambda s, f: received.append(s))
  except ValueError:  # Not the main thread: the timeout only.
    pass
  deadline = time.monotonic() + timeout

  def watch():
    while not done.is_set():
      ready, _, _ = select.select([reader], [], [], _POLL_SECONDS)
      if done.is_set():
        return
      if ready:
        signum = reader.recv(1)[0]
        _LOG.warning('Received %s during %s: stopped (nothing was written).',
                     signal.Signals(signum).name, what)
        os._exit(128 + signum)  # pylint: disable=protected-access
      if time.monotonic() > deadline:
        _LOG.error('ClusterError: Gave up after %.0f s: %s did not finish (a peer that '
                   'answered went away, or another job holds it). Nothing was written.',
                   timeout, what)
        os._exit(1)  # pylint: disable=protected-access

  watcher = threading.Thread(target=watch, daemon=True, name='mi_tf_setup_watchdog')
  watcher.start()
  try:
    return fn()
  finally:
    done.set()
    if old_wakeup is not None:
      signal.set_wakeup_fd(old_wakeup)
    for signum, handler in old_handlers.items():
      signal.signal(signum, handler)  # Also replaces a handler TensorFlow installed.
    watcher.join()
    reader.close()
    writer.close()
    if received:  # A signal between fn's end and here.
      _LOG.warning('Received %s during %s: stopped (nothing was written).',
                   signal.Signals(received[0]).name, what)
      raise SystemExit(128 + received[0])


def task_info(strategy):
  """(task_type, task_id) of this process; ('chief', 0) outside multi-worker training."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
      return 'chief', 0
    return task_type, task_id
  if 'TF_CONFIG' in os.environ and isinstance(strategy,
                                              tf.distribute.MultiWorkerMirroredStrategy):
    task = json.loads(os.environ['TF_CONFIG']).get('task', {})
    return task.get('type', 'chief'), task.get('index', 0)
  return 'chief', 0


def is_chief(strategy):
  """Whether this process writes summaries, checkpoints, metrics and the export."""
  task_type, task_id = task_info(strategy)
  return task_type == 'chief' or (task_type == 'worker' and task_id == 0 and not _has_chief())


def _has_chief():
  if 'TF_CONFIG' not in os.environ:
    return False
  return 'chief' in json.loads(os.environ['TF_CONFIG']).get('cluster', {})


def cross_replica_concat(tensor):
  """Concatenates ``tensor`` [b, ...] of every replica along axis 0 -> [R * b, ...].

  Call in replica context. Replica r's block lands at rows [r * b, (r + 1) * b). With one
  replica it returns ``tensor`` itself.
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return tensor
  num = ctx.num_replicas_in_sync
  index = ctx.replica_id_in_sync_group
  ext = tf.scatter_nd(indices=[[index]], updates=[tensor],
                      shape=tf.concat([[num], tf.shape(tensor)], axis=0))
  ext = ctx.all_reduce(tf.distribute.ReduceOp.SUM, ext)
  return tf.reshape(ext, tf.concat([[-1], tf.shape(tensor)[1:]], axis=0))


def replica_row_offset(local_batch):
  """Row (and positive-column) offset of this replica's block in the global batch."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None:
    return tf.constant(0, tf.int32)
  return tf.cast(ctx.replica_id_in_sync_group, tf.int32) * tf.cast(local_batch, tf.int32)


def all_reduce_sum(value):
  """Sum of ``value`` over replicas (identity with one replica); differentiable."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return value
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas():
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else ctx.num_replicas_in_sync
