"""More seeds where a claim is INCONCLUSIVE: the rounds of ``reproduce run --decide``.

A study first runs every setting at its planned seeds. Then, round by round, the claims are
decided on the finished runs (``claims.check_claims``); every claim that is INCONCLUSIVE under
some probe protocol gives its deciding settings (``claims.undecided_settings``: those of its
unresolved comparisons) ``add`` more seeds, up to ``max_seeds``; the runner runs them and
decides again, until no claim is INCONCLUSIVE or its settings are at ``max_seeds``.

That is sequential testing: looking at the verdicts and adding seeds until one appears makes a
2-SE verdict easier to reach by chance than one at a fixed number of seeds. The rounds are
therefore recorded in ``<runs_dir>/seed_rounds.json`` and the report states, per claim, the
seeds it took and which rounds added them (``rounds_text``).

``next_round`` is pure (claims and seed counts in, the next counts out) and tested on
synthetic claims; ``decide_on_runs`` reads a runs_dir.
"""

import datetime
import json

from mi_tf import files
from mi_tf import jsonl
from mi_tf.report import claims as claims_lib
from mi_tf.report import results

ROUNDS_FILE = 'seed_rounds.json'


def next_round(claim_results, counts, max_seeds, add):
  """The seed counts of the next round, or None if no claim can be decided by more seeds.

  Args:
    claim_results: ``claims.check_claims`` on the finished runs.
    counts: {setting: seeds planned now}.
    max_seeds: no setting gets more seeds than this.
    add: seeds added to a deciding setting per round (>= 1).

  Returns:
    None, or {'counts': {setting: new count} (only the settings that grow), 'claims':
    {claim id: {protocol: [settings]}} (the INCONCLUSIVE claims that asked for them)}.
  """
  if add < 1:
    raise ValueError(f'add must be at least 1, not {add}')
  grow, asked = {}, {}
  for result in claim_results:
    by_protocol = claims_lib.undecided_settings(result)
    if not by_protocol:
      continue
    asked[str(result['id'])] = by_protocol
    for settings in by_protocol.values():
      for s in settings:
        n = counts.get(s, 0)
        if n < max_seeds:
          grow[s] = min(max_seeds, n + add)
  if not grow:
    return None
  return {'counts': dict(sorted(grow.items())), 'claims': asked}


def within_plan(round_, planned):
  """``next_round``'s round cut to the settings of a plan; None if none of them grows.

  A runner whose plan holds only some settings (``run --settings=... --decide``) can add seeds
  to those only: the round keeps their counts, and of the claims that asked only those whose
  settings grow, each with only those settings. Without the cut, a claim whose deciding
  settings lie outside the plan would be recorded as the reason for seeds it did not get.

  Args:
    round_: {'counts': {setting: new count}, 'claims': {claim id: {protocol: [settings]}}}.
    planned: the settings of the plan (a container of names).
  """
  counts = {s: n for s, n in round_['counts'].items() if s in planned}
  if not counts:
    return None
  claims = {}
  for cid, by_protocol in round_['claims'].items():
    kept = {p: [s for s in settings if s in counts] for p, settings in by_protocol.items()}
    kept = {p: settings for p, settings in kept.items() if settings}
    if kept:
      claims[cid] = kept
  return {'counts': counts, 'claims': claims}


def finished_table(runs_dir):
  """(Table of the finished runs of runs_dir, {setting: finished seeds})."""
  finished = results.finished_records(results.load_runs(runs_dir))
  return results.Table(results.aggregate(finished)), {s: len(v) for s, v in finished.items()}


def decide_on_runs(runs_dir, counts, max_seeds, add):
  """``next_round`` on the claims of runs_dir's finished runs; also returns the verdicts.

  Returns:
    (the round of ``next_round`` or None, {claim id: {protocol: status}} of this decision).
  """
  table, _ = finished_table(runs_dir)
  claim_results = claims_lib.check_claims(table)
  verdicts = {str(c['id']): {name: c.get(claims_lib.protocol_key('status', name))
                             for name in claims_lib.PROTOCOLS} for c in claim_results}
  return next_round(claim_results, counts, max_seeds, add), verdicts


def read_rounds(runs_dir):
  """The recorded rounds of runs_dir (a list; [] if none). A file that is not a JSON list is
  an error, not an empty history (it would drop seeds the runs took)."""
  path = files.join(runs_dir, ROUNDS_FILE)
  if not files.isfile(path):
    return []
  try:
    rounds = json.loads(files.read_text(path))
  except ValueError as e:
    raise ValueError(f'{path} is not JSON ({e}); move it away to start the rounds anew') from e
  if not isinstance(rounds, list):
    raise ValueError(f'{path} holds no list of rounds; move it away to start the rounds anew')
  return rounds


def added_seeds(runs_dir):
  """{setting: seeds} that the recorded rounds planned (the largest count of each)."""
  out = {}
  for r in read_rounds(runs_dir):
    for s, n in (r.get('counts') or {}).items():
      out[s] = max(out.get(s, 0), int(n))
  return out


def record_round(runs_dir, before, round_, verdicts):
  """Appends a round to runs_dir's rounds file (replaced atomically).

  Args:
    before: {setting: seeds planned} when the claims were decided.
    round_: ``next_round``'s result.
    verdicts: {claim id: {protocol: status}} of that decision.
  """
  rounds = read_rounds(runs_dir)
  rounds.append({
      'round': len(rounds) + 1,
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'seeds_before': {s: before.get(s, 0) for s in round_['counts']},
      'counts': round_['counts'],
      'claims': round_['claims'],
      'verdicts': {k: v for k, v in verdicts.items() if k in round_['claims']}})
  jsonl.write_json(files.join(runs_dir, ROUNDS_FILE), rounds, indent=1)
  return rounds


def rounds_text(rounds):
  """Markdown lines on the rounds that added seeds ([] if none)."""
  if not rounds:
    return []
  lines = ['Seeds were added where a claim was INCONCLUSIVE at the planned seeds (`python -m '
           'mi_tf.reproduce run --decide`). Adding seeds until a verdict appears is sequential '
           'testing: a verdict reached after added seeds is easier to reach by chance than one '
           'at a fixed number of seeds, and is read with the seeds it took (the claims\' '
           '"seeds" column).', '']
  for r in rounds:
    verdicts = r.get('verdicts') or {}
    # A round recorded by a runner with a partial plan may list claims that asked for settings
    # outside it (runners before ``within_plan``): only the claims whose settings grew count.
    r = {**r, **(within_plan(r, r['counts']) or {'claims': {}})}
    asked = '; '.join(
        f'claim {cid} ('
        + ', '.join(f'{p} probe {verdicts.get(cid, {}).get(p, "?")}' for p in by) + ')'
        for cid, by in r['claims'].items())
    grown = ', '.join(f'`{s}` {r["seeds_before"].get(s, 0)} -> {n}'
                      for s, n in r['counts'].items())
    lines.append(f'- Round {r["round"]} ({r["date"]}): undecided {asked}; seeds {grown}.')
  return lines
