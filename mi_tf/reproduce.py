"""Reproduces the paper in one command: every setting x seed as an independent run, then a report.

  python -m mi_tf.reproduce all --suite=mnist --seeds=3 --runs_dir=../runs    # run + report
  python -m mi_tf.reproduce run --suite=mnist --seeds=3 --runs_dir=../runs    # runs only
  python -m mi_tf.reproduce run --suite=mnist --seeds=3 --runs_dir=DIR --dry_run  # commands
  python -m mi_tf.reproduce run --suite=mnist --seeds=5 --decide --runs_dir=../runs  # + seeds
  python -m mi_tf.reproduce status --suite=mnist --seeds=3 --runs_dir=../runs
  python -m mi_tf.reproduce report --suite=mnist --seeds=3 --runs_dir=../runs --output_dir=.
  python -m mi_tf.reproduce archive --suite=mnist --seeds=3 --runs_dir=../runs --to=DIR

A suite is a list of settings: each experiment gin file of gin/ (its stem names the setting)
and the probe-only baselines (the linear probe on raw X1 pixels, with and without the 0.05
noise of Sec. 3.1). Run k of a setting lives in ``<runs_dir>/<setting>/seed<k>`` and is one
subprocess, ``python -m mi_tf.scripts.train --gin_file=gin/<setting>.gin --model_dir=...
--seed=k`` (or ``python -m mi_tf.scripts.probe --pixels ... --output=.../probe_result.json``),
so a crash or a NaN in
one run cannot take the others (or the runner) down and no gin state leaks between runs.

Resumable: a run is finished when its ``final_metrics.json`` (``probe_result.json`` for
probes) exists, and is then skipped; an interrupted run is rerun with the same command, which
resumes from its newest checkpoint (``mi_tf.train_lib``). A failed run (non-zero exit) is
recorded with the tail of its log in its ``runner_failure.json``, reported at the end and in
REPRODUCTION.md, and the runner goes on with the others.

Executors: ``--executor=local`` (the default) runs as many runs at once as this machine holds,
each sized to its setting (CPU cores, GPU share, memory; ``--jobs N`` caps it, ``--jobs 1``
runs them one after the other); ``--executor=ray`` submits each run as a Ray task to a local
Ray instance or to the cluster at ``--ray_address``, retried on another node if its node dies.
Several drivers (on several machines sharing runs_dir) never run the same run at a time: a
lease file per run, on any file system (runs_dir may be ``gs://...``). ``--dry_run`` prints
the commands of the unfinished runs, one per line, for any other scheduler. Each run's output
goes to ``<model_dir>/runner.log``.

``--decide``: after the plan, the claims are decided on the finished runs and the settings of
every INCONCLUSIVE claim's unresolved comparisons get ``--add_seeds`` more seeds (up to
``--max_seeds``), round after round, until none can be decided by more seeds
(``mi_tf.report.seeds``; the rounds are recorded in ``<runs_dir>/seed_rounds.json``, planned
by every later command on that runs_dir and stated in the report).

``archive --to=DIR`` copies the records of the finished runs (configs, run_info.json,
metrics.jsonl, the runner's attempts, the result file; no checkpoints, exports or event files)
and the ``--decide`` rounds from --runs_dir into DIR (``mi_tf.archive``): the report can be
written from DIR alone, and DIR given as --runs_dir to ``archive --to`` a new runs directory
starts it with those runs finished. It never overwrites a finished run or a run in progress.

The report never loses results (``mi_tf.report.existing``): where a setting would hold fewer
finished runs than the report already in --output_dir (the repository's, by default) holds,
it writes nothing and exits with status 2, saying so (--allow_fewer_runs replaces it anyway);
a report of one suite keeps the other settings' rows, entries and figures. An error of the
command line or of the file system (a runs_dir that is a file or, for status and report, does
not exist; an output_dir that is a file) is one line on stderr and exit status 2 (--verbose:
the traceback); exit status 1: some runs failed.
"""

import argparse
import os
import pathlib
import shlex
import sys

from mi_tf import archive as archive_lib
from mi_tf import executor
from mi_tf import files
from mi_tf import gin_files
from mi_tf import report
from mi_tf.report import seeds as seeds_lib
from mi_tf import runs as runs_lib
from mi_tf import tf_quiet
from mi_tf import study


class UsageError(Exception):
  """A command line that cannot be carried out; its message is one line."""


def _parse_setting_seeds(text, settings=()):
  """{setting: seeds} of "name=N,name=N" (N >= 0); a name outside ``settings`` (the plan)
  must be a setting of the study (a typo is an error, not a silent default)."""
  out = {}
  for item in [t for t in (text or '').split(',') if t.strip()]:
    name, _, n = item.partition('=')
    try:
      out[name.strip()] = int(n)
    except ValueError:
      raise UsageError(f'--setting_seeds: {item.strip()!r} is not NAME=N (e.g. '
                       '"sec4_iid=5").') from None
    if out[name.strip()] < 0:
      raise UsageError(f'--setting_seeds: {item.strip()!r} has a negative seed count.')
  try:
    study.suite_settings([], sorted(set(out) - set(settings)))
  except ValueError as e:
    raise UsageError(f'--setting_seeds: {e}') from None
  return out


def _positive_int(text):
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'not a whole number: {text!r}') from None
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be at least 1, not {value}')
  return value


def _check_dirs(args, runs_dir):
  """One-line errors for a runs_dir or an output_dir that cannot be what the command needs:
  a file (any command), or a runs_dir that does not exist (status, report: only ``run`` and
  ``all`` create it)."""
  if files.exists(runs_dir) and not files.isdir(runs_dir):
    raise UsageError(f'--runs_dir {args.runs_dir} is a file, not a directory.')
  if args.cmd in ('status', 'report', 'archive') and not files.isdir(runs_dir):
    raise UsageError(f'--runs_dir {args.runs_dir} does not exist (nothing has run there: '
                     'check the path; `run` creates it).')
  output_dir = getattr(args, 'output_dir', None)
  if output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise UsageError(f'--output_dir {output_dir} is a file, not a directory.')


def _add_plan_flags(p):
  p.add_argument('--suite', action='append', default=[],
                 help=f'suite(s) to run: {", ".join(study.SUITES)} (comma list or repeated).')
  p.add_argument('--settings', action='append', default=[],
                 help='explicit settings: gin file stems of gin/ or probe baselines '
                      f'({", ".join(study.PROBE_BASELINES)}); comma list or repeated.')
  p.add_argument('--phases', action='store_true',
                 help='the whole study: the phases of study.STUDY_PHASES in order, each with '
                      'its own seeds (' + '; '.join(f'{n}: {len(s)} settings x {k}'
                                                   for n, s, k in study.STUDY_PHASES)
                      + '); status and report cover all of them.')
  p.add_argument('--seeds', type=_positive_int, default=3, help='seeds 0 .. N-1 per setting.')
  p.add_argument('--setting_seeds', default='',
                 help='per-setting seed counts overriding --seeds, e.g. '
                      '"sec3_1_realnvp=3,sec4_iid=5" (default: '
                      + ', '.join(f'at most {v} for {k}'
                                  for k, v in study.DEFAULT_SETTING_SEEDS.items()) + ').')
  p.add_argument('--runs_dir', required=True,
                 help='root of the run directories (keep it outside the repository).')
  p.add_argument('--verbose', action='store_true',
                 help='on an error, show its traceback (default: one line).')


def _default_output_dir():
  """The repository root in a checkout (where REPRODUCTION.md lives), else the current
  directory."""
  return str(gin_files.checkout_dir() or os.getcwd())


def main(argv=None):
  # The report's figures import TensorFlow (for their TensorBoard images): quietly, as the
  # training programs do; the runs get TF_CPP_MIN_LOG_LEVEL through the environment.
  tf_quiet.quiet_tensorflow_start()
  parser = argparse.ArgumentParser(prog='python -m mi_tf.reproduce', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='cmd', required=True)
  p_run = sub.add_parser('run', help='run every unfinished setting x seed (resumable).')
  p_all = sub.add_parser('all', help='run, then write the report.')
  p_status = sub.add_parser('status', help='state of every planned run.')
  p_report = sub.add_parser('report', help='aggregate, figures, claim checks, '
                                           'REPRODUCTION.md.')
  p_archive = sub.add_parser('archive', help="copy the finished runs' records (no "
                                             'checkpoints) to another runs directory.')
  for p in (p_run, p_all, p_status, p_report, p_archive):
    _add_plan_flags(p)
  p_archive.add_argument('--to', required=True,
                         help='the runs directory to copy into (created if absent); runs '
                              'it holds finished, or that run there now, are left alone.')
  for p in (p_run, p_all):
    p.add_argument('--gin_bindings', action='append', default=[],
                   help='extra gin binding for every training run (repeatable).')
    p.add_argument('--data_dir', default=None, help='TFDS data directory for every run.')
    p.add_argument('--dry_run', action='store_true',
                   help='print the command of every unfinished run, one per line, and exit '
                        '(each runs from any directory).')
    p.add_argument('--python', default=sys.executable, help='Python of the runs.')
    p.add_argument('--executor', choices=('local', 'ray'), default='local',
                   help='local: this machine, several runs at once; ray: a Ray cluster.')
    p.add_argument('--jobs', type=_positive_int, default=None,
                   help='local executor: at most N runs at once (default: as many as the '
                        "machine's cores, GPUs and memory hold, by each setting's needs; "
                        '1: one after the other).')
    p.add_argument('--ray_address', default=None,
                   help="ray executor: 'auto' (the cluster this machine is part of) or "
                        'HOST:PORT (default: start a local Ray instance).')
    p.add_argument('--max_retries', type=int, default=3,
                   help='ray executor: retries of a run whose node died (it resumes from its '
                        'checkpoint).')
    p.add_argument('--decide', action='store_true',
                   help='after the planned runs, decide the claims; where one is INCONCLUSIVE '
                        'under a probe, give the settings of its unresolved comparisons '
                        '--add_seeds more seeds (up to --max_seeds), run them and decide '
                        'again, until none can be decided by more seeds (each round is '
                        'recorded in <runs_dir>/seed_rounds.json and stated in the report).')
    p.add_argument('--max_seeds', type=_positive_int, default=10,
                   help='--decide: at most this many seeds per setting (default 10).')
    p.add_argument('--add_seeds', type=_positive_int, default=2,
                   help='--decide: seeds added to a deciding setting per round (default 2).')
  for p in (p_all, p_report):
    p.add_argument('--output_dir', default=_default_output_dir(),
                   help='where REPRODUCTION.md, figures/ and results/ are written '
                        '(default: the repository root in a checkout, else the current '
                        'directory).')
    p.add_argument('--tensorboard_dir', default=None,
                   help='TensorBoard dir of the figures (default: <runs_dir>/report_tb, '
                        'none for a runs_dir inside the repository; "none" to skip).')
    p.add_argument('--allow_fewer_runs', action='store_true',
                   help='replace the report in --output_dir even where it holds more finished '
                        'runs of a setting than this one (default: refuse, writing nothing).')
  args = parser.parse_args(argv)
  if not args.suite and not args.settings and not args.phases:
    parser.error('give --suite and/or --settings, or --phases.')
  if args.phases and (args.suite or args.settings):
    parser.error('--phases is the whole study: give it without --suite and --settings.')
  try:
    settings = study.suite_settings(args.suite, args.settings or [
        ','.join(names) for _, names, _ in study.STUDY_PHASES] * bool(args.phases))
  except ValueError as e:
    parser.error(str(e))
  try:
    return _main(args, settings, argv)
  except BrokenPipeError:  # The reader of stdout is gone (e.g. `... --dry_run | head`).
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1
  except (UsageError, report.ReportError, OSError) as e:
    if args.verbose:
      raise
    hint = ' (--verbose shows the traceback)' if isinstance(e, OSError) else ''
    message = ' '.join(str(e).split())  # One line.
    print(f'{parser.prog} {args.cmd}: error: {message}{hint}', file=sys.stderr)
    return 2


def _inside_checkout(runs_dir):
  """True if the local ``runs_dir`` lies inside this package's checkout."""
  checkout = gin_files.checkout_dir()
  return bool(files.is_local(runs_dir) and checkout is not None
              and checkout in pathlib.Path(runs_dir).parents)


def _added_seeds(runs_dir):
  """{setting: seeds} that earlier ``--decide`` rounds added to runs_dir's plan (status,
  report and a restarted run plan them too)."""
  try:
    return seeds_lib.added_seeds(runs_dir) if files.isdir(runs_dir) else {}
  except ValueError as e:
    raise UsageError(str(e)) from None


def _execute(args, runs, runs_dir):
  """Runs the unfinished ``runs`` on the chosen executor; the executor's summary."""
  if args.executor == 'ray':
    from mi_tf import ray_executor  # pylint: disable=g-import-not-at-top
    return ray_executor.run_all(runs, runs_dir, runs_lib.REPO_DIR, args.python,
                                args.gin_bindings, args.data_dir, address=args.ray_address,
                                max_retries=args.max_retries)
  return executor.run_all(runs, runs_dir, runs_lib.REPO_DIR, args.python, args.gin_bindings,
                          args.data_dir, jobs=args.jobs)


def _archive(args, runs, runs_dir):
  """``archive``: the plan's finished runs and the rounds file from runs_dir to --to; exit
  status 1 if a run conflicts (finished differently in --to) or is busy there."""
  target_dir = files.abspath(args.to)
  if files.exists(target_dir) and not files.isdir(target_dir):
    raise UsageError(f'--to {args.to} is a file, not a directory.')
  if target_dir == runs_dir:
    raise UsageError('--to is --runs_dir itself: give another directory.')
  pairs = [(run, runs_lib.Run(run.setting, run.seed, files.join(
      target_dir, run.setting.name, f'seed{run.seed}'))) for run in runs]
  out = archive_lib.copy_records(pairs, runs_dir, target_dir, [seeds_lib.ROUNDS_FILE])
  said = {'copied': 'copied', 'same': 'already there, the same', 'kept': 'kept (the target '
          "extends the source's)", 'unfinished': 'not finished (not copied)',
          'running': 'finished but still held by its driver (not copied yet: archive again '
          'when it is released)',
          'busy': 'running in the target (not touched)', 'conflict': 'finished differently '
          'in the target (not touched; remove its directory there to take this one)'}
  for outcome in ('conflict', 'busy'):
    for key in out.get(outcome, []):
      print(f'{key}: {said[outcome]}', file=sys.stderr)
  print(f'{runs_dir} -> {target_dir}: ' + '; '.join(
      f'{len(out[k])} {said[k]}' for k in said if out.get(k)) + '.')
  return 1 if out.get('conflict') or out.get('busy') else 0


def _main(args, settings, argv):
  """The command of parsed ``args`` over ``settings``; its exit status."""
  runs_dir = files.abspath(args.runs_dir)
  _check_dirs(args, runs_dir)
  parsed = _parse_setting_seeds(args.setting_seeds, [s.name for s in settings])
  added = _added_seeds(runs_dir)
  phases = [(None, settings, args.seeds)]
  if args.phases:
    phases = [(name, [s for s in settings if s.name in names], seeds)
              for name, names, seeds in study.STUDY_PHASES]

  def phase_counts(members, seeds):
    """{setting: seeds} of a phase: --setting_seeds, else --seeds capped by the defaults;
    at least what earlier --decide rounds added."""
    return {s.name: max(parsed.get(s.name, min(seeds, study.DEFAULT_SETTING_SEEDS.get(
        s.name, seeds))), added.get(s.name, 0)) for s in members}

  setting_seeds = {}  # The whole plan: each setting's largest count over the phases.
  for _, members, seeds in phases:
    for name, n in phase_counts(members, seeds).items():
      setting_seeds[name] = max(setting_seeds.get(name, 0), n)
  runs = runs_lib.plan(settings, args.seeds, args.runs_dir, setting_seeds)
  # The order the runs start in: the phases' plans one after the other, in one executor call
  # (a core freed at the end of a phase takes the next phase's first run instead of idling
  # until the phase is complete); without --phases, the plan.
  ordered, said = (runs, []) if not args.phases else ([], [])
  for i, (name, members, seeds) in enumerate(phases if args.phases else [], 1):
    seen = {r.key for r in ordered}
    new = [r for r in runs_lib.plan(members, seeds, args.runs_dir,
                                    phase_counts(members, seeds)) if r.key not in seen]
    ordered += new
    said.append(f'Phase {i}: {name} ({len(members)} settings, at most {seeds} seed(s) each; '
                f'runs {len(ordered) - len(new) + 1}-{len(ordered)} of the plan)')

  if args.cmd in ('run', 'all'):
    if args.dry_run:
      python = 'python' if args.python == sys.executable else args.python
      for run in ordered:
        if runs_lib.state(run) != 'finished':
          print(runs_lib.shell_command(run, python, args.gin_bindings, args.data_dir))
      return 0
    if _inside_checkout(runs_dir):
      print(f'Warning: runs_dir {runs_dir} is inside the repository; keep checkpoints and '
            'event files out of commits.', file=sys.stderr)
    if args.executor == 'ray':
      if args.jobs is not None:
        raise UsageError('--jobs is for --executor=local; Ray sizes runs by their resources.')
    elif args.ray_address:
      raise UsageError('--ray_address needs --executor=ray.')
    for line in said:
      print(line)
    summary = _execute(args, ordered, runs_dir)
    while args.decide and not summary['failed']:
      if summary.get('busy'):  # Another driver still runs some: decide when they are done.
        print('Some runs are running elsewhere; decide again when they have finished: '
              + ', '.join(summary['busy']))
        break
      counts = dict(setting_seeds)  # Seeds planned per setting (the plan of ``runs``).
      round_, verdicts = seeds_lib.decide_on_runs(runs_dir, counts, args.max_seeds,
                                                  args.add_seeds)
      if round_ is None:
        print('Every claim is decided, or its deciding settings have --max_seeds '
              f'{args.max_seeds} seeds: no more seeds.')
        break
      planned = seeds_lib.within_plan(round_, counts)
      if planned is None:  # The deciding settings are outside this plan (e.g. another suite's).
        print('The undecided claims need seeds of settings outside this plan: '
              + ', '.join(round_['counts']) + '.')
        break
      round_ = planned
      grown = round_['counts']
      rounds = seeds_lib.record_round(runs_dir, counts, round_, verdicts)
      print(f'Round {len(rounds)}: undecided claim(s) {", ".join(round_["claims"])}; seeds '
            + ', '.join(f'{s} {counts[s]} -> {n}' for s, n in grown.items()))
      setting_seeds.update(grown)
      runs = runs_lib.plan(settings, args.seeds, args.runs_dir, setting_seeds)
      summary = _execute(args, runs, runs_dir)
    rc = 1 if summary['failed'] else 0
    if args.cmd == 'run':
      return rc
  elif args.cmd == 'archive':
    return _archive(args, ordered, runs_dir)
  elif args.cmd == 'status':
    rows = runs_lib.status_table(runs, runs_dir)
    width = max((len(r[0]) for r in rows), default=10)
    for key, st, detail in rows:
      print(f'{key:<{width}}  {st:<9} {detail}')
    counts = {s: sum(r[1] == s for r in rows)
              for s in ('finished', 'running', 'partial', 'failed', 'new')}
    print(', '.join(f'{v} {k}' for k, v in counts.items()) + f' of {len(rows)} runs')
    return 0
  else:
    rc = 0

  # The figures' TensorBoard images go beside the runs, except into a runs directory of the
  # repository (an archive such as results/study/): event files are not committed.
  tb_dir = args.tensorboard_dir or ('none' if _inside_checkout(runs_dir)
                                    else os.path.join(runs_dir, 'report_tb'))
  report.write_report(runs_dir, args.output_dir, runs,
                      tensorboard_dir=None if tb_dir == 'none' else tb_dir,
                      command=' '.join(['python -m mi_tf.reproduce'] + [
                          shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]),
                      allow_fewer_runs=args.allow_fewer_runs)
  return rc


if __name__ == '__main__':
  sys.exit(main())
