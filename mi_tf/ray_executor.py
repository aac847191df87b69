"""Executes the runs of a plan on a Ray cluster: each run one Ray task with its setting's needs.

  python -m mi_tf.reproduce run --suite=mnist --seeds=5 --runs_dir=/shared/runs --executor=ray
      [--ray_address=auto|HOST:PORT]

Without an address a local Ray instance is started (the same command works on a laptop);
``auto`` joins the cluster this machine belongs to (``ray start``). Every run is submitted as
a task asking for its setting's ``study.Resources`` (``num_cpus``, a fraction of a GPU for the
small settings, one TPU host's chips where the cluster has the ``TPU`` resource, as Ray on a
Cloud TPU VM has); each task runs ``mi_tf.executor.execute`` on its node, the same subprocess
as the local executor, with its threads set to the task's CPUs. A task whose node dies (or
whose worker crashes) is retried by Ray on another node (``max_retries``); the retry resumes
from the run's newest checkpoint, so nothing done before the last checkpoint is lost.

This driver owns the sweep: it takes every run's lease (``mi_tf.leases``) before submitting it
and renews them until the run's task ends, so a second driver on the same runs_dir leaves
those runs alone. Every node needs the same repository path and Python environment as the
driver (a shared file system or an image), and runs_dir must be reachable from every node
under the same name: a shared file system or any path ``tf.io.gfile`` handles (``gs://``).
Ray (``pip install -e '.[ray]'``) is imported only here.
"""

import os
import queue
import sys
import time

from mi_tf import executor
from mi_tf import files
from mi_tf import leases
from mi_tf import runs as runs_lib


def _attempt(run, repo_dir, python, gin_bindings, data_dir, env, threads, gpu_share, commit):
  """The body of one Ray task: one attempt of ``run`` on this node."""
  import ray  # pylint: disable=g-import-not-at-top
  # The child (python -m mi_tf.scripts.*) needs no checkout: it runs in the driver's directory
  # where this node has it, else in this task's own (a job submitted with a runtime_env
  # working_dir, ray job submit --working-dir ., runs in its copy), with this node's
  # interpreter.
  if not os.path.isdir(str(repo_dir)):
    repo_dir = os.getcwd()
  if not os.path.exists(python):
    python = sys.executable
  env = executor.child_env(executor.Allocation(threads=threads), env)
  if gpu_share:
    env['TF_FORCE_GPU_ALLOW_GROWTH'] = 'true'  # Ray has set CUDA_VISIBLE_DEVICES.
  context = ray.get_runtime_context()
  result = executor.execute(run, repo_dir, python, gin_bindings, data_dir, env, commit=commit,
                            extra_record={'threads': threads, 'node': context.get_node_id(),
                                          'executor': 'ray'})
  result['node'] = context.get_node_id()
  return result


def _task_options(resources, cluster, max_node_cpus, max_retries, tpu_chips=0):
  """Ray options of a run: its CPUs (capped at the largest node, or it would never start),
  its GPU share where the cluster has GPUs, and a whole TPU host's chips (``tpu_chips``)
  where the cluster's nodes have the ``TPU`` resource."""
  options = {'num_cpus': max(1, min(resources.cpus, int(max_node_cpus) or 1)),
             'max_retries': max_retries, 'retry_exceptions': False}
  if cluster.get('GPU', 0) > 0:
    options['num_gpus'] = min(1.0, resources.gpu)
  if tpu_chips:
    # A TPU VM host's chips belong to one process: every run takes a whole host.
    options['resources'] = {'TPU': tpu_chips}
  return options


def run_all(runs, runs_dir, repo_dir=runs_lib.REPO_DIR, python=sys.executable, gin_bindings=(),
            data_dir=None, env=None, out=sys.stdout, address=None, max_retries=3,
            lease_ttl=leases.DEFAULT_TTL, ray_init_kwargs=None):
  """Runs every unfinished run as a Ray task; the same summary as ``executor.run_all``."""
  os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # Ray reports usage otherwise.
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("--executor=ray needs Ray: pip install -e '.[ray]'") from None
  runs_dir = files.abspath(runs_dir)
  files.makedirs(runs_dir)
  started_here = not ray.is_initialized()
  if started_here:
    kwargs = dict(ray_init_kwargs or {})
    kwargs.setdefault('include_dashboard', False)
    kwargs.setdefault('log_to_driver', False)
    ray.init(address=address, **kwargs)
  cluster = ray.cluster_resources()
  alive = [n for n in ray.nodes() if n.get('Alive')]
  max_node_cpus = max((n['Resources'].get('CPU', 0) for n in alive), default=1)
  tpu_chips = min((n['Resources']['TPU'] for n in alive if n['Resources'].get('TPU')),
                  default=0)
  print(f'Ray cluster: {len(alive)} node(s), {cluster.get("CPU", 0):g} CPU(s), '
        f'{cluster.get("GPU", 0):g} GPU(s), {cluster.get("TPU", 0):g} TPU chip(s); '
        f'retries per run: {max_retries}.', file=out, flush=True)
  commit = runs_lib.git_info(repo_dir)
  remote = ray.remote(_attempt)
  holder = leases.Holder(ttl=lease_ttl)
  summary = {'skipped': [], 'completed': [], 'failed': [], 'busy': []}
  durations = runs_lib.known_durations(runs, runs_dir)
  begin = time.time()
  index = {r.key: k for k, r in enumerate(runs, 1)}
  refs = {}  # ObjectRef -> run.
  signals = queue.Queue()

  def prefix(run):
    return f'[{index[run.key]}/{len(runs)}] {run.setting.name} seed{run.seed}'

  with executor.Signals(lambda: signals.put(True)):
    try:
      for run in runs:
        before = runs_lib.state(run)
        if before == 'finished':
          summary['skipped'].append(run.key)
          print(f'{prefix(run)} (finished: skipped)', file=out, flush=True)
          continue
        if not holder.acquire(run.model_dir):
          summary['busy'].append(run.key)
          print(f'{prefix(run)} busy: another driver holds {run.model_dir}', file=out,
                flush=True)
          continue
        options = _task_options(run.setting.resources, cluster, max_node_cpus, max_retries,
                                tpu_chips)
        ref = remote.options(**options).remote(
            run, str(repo_dir), python, tuple(gin_bindings), data_dir, env,
            options['num_cpus'], options.get('num_gpus', 0.0), commit)
        refs[ref] = (run, before)
        print(f'{prefix(run)} ({executor.state_phrase(run, before)}) submitted: '
              f'{options["num_cpus"]} CPU(s)'
              + (f', {options["num_gpus"]:g} GPU' if 'num_gpus' in options else ''),
              file=out, flush=True)
      while refs:
        if not signals.empty():
          for ref in refs:
            ray.cancel(ref)  # KeyboardInterrupt in the task: it stops its child with SIGTERM.
          print('Stopped; rerun the same command to continue where it stopped.', file=out,
                flush=True)
          raise executor.Stopped()
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
        for ref in ready:
          run, before = refs.pop(ref)
          try:
            result = ray.get(ref)
          except Exception as e:  # pylint: disable=broad-except
            # Retries exhausted (nodes died every time) or the task itself raised.
            result = {'returncode': None, 'seconds': 0.0, 'output': '',
                      'failure': {'key': run.key, 'setting': run.setting.name,
                                  'seed': run.seed, 'error': f'{type(e).__name__}: {e}'[:2000],
                                  'log': files.join(run.model_dir, runs_lib.RUNNER_LOG),
                                  'executor': 'ray'}}
            runs_lib.write_failure(run, result['failure'])
          holder.release(run.model_dir)
          print(executor.done_line(prefix(run), result)
                + (f' on node {result["node"][:8]}' if result.get('node') else ''),
                file=out, flush=True)
          if result['failure'] is None and result['returncode'] == 0:
            summary['completed'].append(run.key)
            if before == 'new':
              durations[run.setting.name] = result['seconds']
          elif result['failure'] is not None:
            summary['failed'].append(run.key)
          remaining = [r for r, _ in refs.values()]
          eta = executor.eta_seconds(remaining, durations,
                                     lambda r: r.setting.resources.cpus,
                                     max(1, int(cluster.get('CPU', 1))),
                                     # The measured table times full-length runs only.
                                     measured={} if gin_bindings else None)
          print(f'    {len(remaining)} run(s) left; elapsed '
                f'{runs_lib.format_duration(time.time() - begin)}, ETA '
                f'{executor.format_eta(*eta)}', file=out, flush=True)
    finally:
      holder.close()
      if started_here:
        ray.shutdown()
  executor.print_summary(summary, begin, out, runs)
  return summary
