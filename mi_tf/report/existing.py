"""The report already in an output directory: what it holds, the rule that a new report never
holds fewer runs, and the merge of a partial report into it.

A report writes into output_dir results/curves.csv (rows per setting), results/summary.json
(claims, the inventory of runs per setting, failures, final values, figures, provenance),
figures/<name>.png and the generated section of REPRODUCTION.md. ``read(output_dir)`` reads
back what it holds: ``Existing`` with ``counts`` = {setting: finished runs}, from the run
inventory of summary.json (without one: the seeds behind each setting's rows of curves.csv;
without either: only the total of the "Runs: N of M planned runs finished" line of
REPRODUCTION.md's generated section).

The scope of a new report is the settings it has news of: those of the runner's plan and those
with run directories in runs_dir. ``check`` refuses (``FewerRuns``) a report in which a
setting of its scope would hold fewer finished runs than the existing report holds for it
(e.g. an empty or mistyped runs_dir, or runs still being continued), unless it is allowed.
Settings outside the scope are kept as the existing report holds them (``kept_settings``,
``merge_rows``, ``merge_summary``): their curves.csv rows, inventory, failures, final values,
provenance and figures; only the figures that read a setting of the scope are redrawn or
removed (``owned_figures``). A report of one suite thus updates that suite's part of the
committed report and leaves the rest as it was (its claims are decided again on the merged
table; a report with an empty scope rewrites the existing one from its own results). To start
afresh, or to drop a setting the study no longer has, write to a new output_dir.
"""

import csv
import dataclasses
import json
import os
import pathlib
import re

from mi_tf import study
from mi_tf.report import results

CURVES = os.path.join('results', 'curves.csv')
SUMMARY = os.path.join('results', 'summary.json')
REPRODUCTION = 'REPRODUCTION.md'
_RUNS_LINE = re.compile(r'^Runs: (\d+) of \d+ planned runs finished', re.M)
_SHOWN = 4  # Settings named in a refusal; the rest are counted.


class ReportError(Exception):
  """A report that cannot be written as asked; nothing was written. The message is one line."""


class FewerRuns(ReportError):
  """The new report would hold fewer finished runs than the one it replaces."""


@dataclasses.dataclass
class Existing:
  """What the report in an output directory holds.

  summary: results/summary.json (None: absent).
  rows: results/curves.csv rows (results.Table rows; [] if absent).
  counts: {setting: finished runs}, or None where only a total is known.
  total: finished runs of the whole report.
  source: the file ``counts``/``total`` were read from (for messages).
  problems: files that exist but could not be read (each a one-line description).
  """
  summary: dict = None
  rows: list = dataclasses.field(default_factory=list)
  counts: dict = None
  total: int = 0
  source: str = ''
  problems: list = dataclasses.field(default_factory=list)


def _generated_section(text):
  begin = text.find('<!-- BEGIN GENERATED')
  return text[begin:] if begin >= 0 else ''


def read(output_dir):
  """The report in ``output_dir`` (``Existing``), or None if it holds none."""
  out = Existing()
  summary_path = os.path.join(output_dir, SUMMARY)
  csv_path = os.path.join(output_dir, CURVES)
  if os.path.lexists(summary_path):
    try:
      summary = json.loads(pathlib.Path(summary_path).read_text())
      out.counts = {str(s): len(e['finished']) for s, e in summary['inventory'].items()}
      out.summary, out.source = summary, SUMMARY
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
      out.problems.append(f'{summary_path} is unreadable ({type(e).__name__}: {e})')
  if os.path.lexists(csv_path):
    try:
      out.rows = results.Table.from_csv(csv_path).rows
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, csv.Error) as e:
      out.problems.append(f'{csv_path} is unreadable ({type(e).__name__}: {e})')
  if out.counts is None and out.rows:
    table = results.Table(out.rows)
    out.counts = {s: table.n_seeds(s) for s in table.settings()}
    out.source = CURVES
  md_path = os.path.join(output_dir, REPRODUCTION)
  if out.counts is None and os.path.isfile(md_path):
    m = _RUNS_LINE.search(_generated_section(
        pathlib.Path(md_path).read_text(errors='replace')))
    if m:
      out.total, out.source = int(m.group(1)), REPRODUCTION
  if out.counts is not None:
    out.total = sum(out.counts.values())
  if out.counts is None and not out.total and not out.problems:
    return None
  return out


def check(existing, output_dir, counts, scope, allow=False):
  """Raises ``ReportError`` unless the new report holds, in every setting of its scope, at
  least as many finished runs as the existing report (or ``allow``).

  Args:
    existing: ``read(output_dir)`` (None: no report there).
    output_dir: for the message.
    counts: {setting: finished runs} of the new report's scope.
    scope: the settings the new report replaces (``kept_settings`` keeps the others).
    allow: replace them anyway (--allow_fewer_runs).
  """
  if allow or existing is None:
    return
  how = ('Nothing was written. Write the report elsewhere (--output_dir) or replace it '
         'anyway (--allow_fewer_runs).')
  if existing.problems:
    raise ReportError(f'{existing.problems[0]}: cannot tell which runs the report in '
                      f'{output_dir} holds. {how}')
  new = {s: counts.get(s, 0) for s in scope}
  if existing.counts is not None:
    fewer = {s: (existing.counts[s], n) for s, n in sorted(new.items())
             if n < existing.counts.get(s, 0)}
    if not fewer:
      return
    total = existing.total - sum(existing.counts.get(s, 0) for s in scope) + sum(new.values())
    names = [f'{s} {a} -> {b}' for s, (a, b) in fewer.items()]
    more = f', and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''
    detail = f'; fewer in {len(fewer)} setting(s): {", ".join(names[:_SHOWN])}{more}'
  else:
    total = sum(new.values())
    if total >= existing.total:
      return
    detail = ''
  raise FewerRuns(f'the report in {output_dir} holds {existing.total} finished runs (by its '
                  f'{existing.source}); this one would hold {total}{detail}. {how}')


def kept_settings(existing, scope):
  """The settings of the existing report outside the new report's scope (sorted)."""
  if existing is None:
    return []
  names = {r['setting'] for r in existing.rows}
  summary = existing.summary or {}
  names |= set(summary.get('inventory') or {}) | set(summary.get('final_values') or {})
  names |= {k.rsplit('/', 1)[0] for k in summary.get('failures') or {}}
  return sorted(names - set(scope))


def owned_figures(scope):
  """The figures a report of ``scope`` draws (or removes): those reading one of its
  settings (``study.figure_settings``); the others are left as they are."""
  scope = set(scope)
  return [name for name, reads in study.figure_settings().items() if scope & set(reads)]


def merge_rows(rows, existing, kept):
  """The new rows and the existing report's rows of the kept settings, in the order of
  ``results.aggregate`` (setting, split, metric, step)."""
  kept = set(kept)
  old = [r for r in (existing.rows if existing else []) if r['setting'] in kept]
  return sorted(list(rows) + old,
                key=lambda r: (r['setting'], r['split'], r['metric'], int(r['step'])))


def parse_duration(text):
  """Seconds of a ``markdown._duration`` string ('1 day, 2:03:04', '≥ 0:01:00'); None if it is
  not one."""
  m = re.fullmatch(r'(?:≥ )?(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)', (text or '').strip())
  if not m:
    return None
  days, h, mi, s = (int(g or 0) for g in m.groups())
  return ((days * 24 + h) * 60 + mi) * 60 + s


def _provenance(generated):
  return {k: generated.get(k) for k in ('date', 'command', 'commit', 'runs_dir')}


def merge_summary(existing, kept, parts):
  """The new report's parts with those of the kept settings from the existing summary.

  Args:
    existing: ``read(...)`` (None: nothing to keep).
    kept: ``kept_settings``.
    parts: {'inventory', 'failures', 'final_values': per setting; 'info': the generated
      info, whose per-setting entries 'steps', 'wall', 'flags', 'precision', 'wall_seconds'
      ({setting: [seconds of its finished runs together, exact?]}) are merged too, and
      'kept_from' ({setting: provenance of the report it is kept from}) is set}.

  Returns:
    ``parts`` with the kept settings' entries added (a new dict; ``parts`` is not changed).
  """
  out = {k: dict(v) for k, v in parts.items()}
  info = out['info']
  for key in ('steps', 'wall', 'flags', 'wall_seconds', 'precision'):
    info[key] = dict(info.get(key) or {})
  info['kept_from'] = {}
  summary = (existing.summary if existing else None) or {}
  old_info = summary.get('generated') or {}
  kept = set(kept)
  if not kept:
    return out
  inv = summary.get('inventory') or {}
  for s in kept & set(inv):
    e = dict(inv[s])
    e['partial'] = {int(k): v for k, v in (e.get('partial') or {}).items()}  # JSON keys.
    out['inventory'][s] = e
  for k, v in (summary.get('failures') or {}).items():
    if k.rsplit('/', 1)[0] in kept:
      out['failures'][k] = v
  for s, v in (summary.get('final_values') or {}).items():
    if s in kept:
      out['final_values'][s] = v
  for key in ('steps', 'wall', 'flags', 'precision'):
    for s, v in (old_info.get(key) or {}).items():
      if s in kept:
        info[key][s] = v
  old_seconds = old_info.get('wall_seconds') or {}
  for s in kept:
    if s in old_seconds:
      info['wall_seconds'][s] = list(old_seconds[s])
    elif parse_duration(info['wall'].get(s)) is not None:
      # An older summary records the mean per run only: mean x finished runs, a lower bound.
      n = len((inv.get(s) or {}).get('finished') or [])
      info['wall_seconds'][s] = [parse_duration(info['wall'][s]) * n, False]
  old_kept = old_info.get('kept_from') or {}
  for s in kept:
    info['kept_from'][s] = old_kept.get(s) or _provenance(old_info)
  info['hosts'] = sorted(set(info.get('hosts') or []) | set(old_info.get('hosts') or []))
  info['versions'] = info.get('versions') or old_info.get('versions') or ''
  return out
