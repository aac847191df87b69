"""The six claim checks of the paper, decided on a results Table.

``claim1(table)`` ... ``claim6(table)`` -> {id, claim, status PASS | FAIL | INSUFFICIENT_DATA,
checks, numbers, n_seeds, notes}; ``check_claims(table)`` runs all six. Each claim asks
``mi_tf.study`` for the names of the settings it reads, when it runs.
"""

import math

from mi_tf import study
from mi_tf.report.results import ACC

# 0.0204 nats: the paper's Sec. 4 (covariance [[2, .4], [.4, 2]], correlation rho = 0.2).
TRUE_MI_SEC4 = -0.5 * math.log(1 - 0.2**2)

# Claim tolerances, fixed before looking at results (see the claim functions).
MATCH_TOLERANCE = 0.1   # Claim 5: |I_EST - t| <= 0.1 t for both encoders ("matched").
NOISE_FACTOR = 3.0      # Claim 6: i.i.d. within 3 noise SDs of the true MI; non-i.i.d. above.

PASS, FAIL, INSUFFICIENT = 'PASS', 'FAIL', 'INSUFFICIENT_DATA'


def claim_text(claim_id):
  """The statement of a claim, naming its settings as ``mi_tf.study`` names them now."""
  return {
      1: f'{study.realnvp_setting("infonce")}: final probe accuracy > pixel baseline, and '
         'I_EST rises, while true MI is constant.',
      2: f'{study.ADVERSARIAL}: the separately trained probe\'s test accuracy ends below the '
         'pixel baseline.',
      3: f'{study.resmlp_setting("infonce")}: median log condition number grows over training '
         'while accuracy rises.',
      4: f'{study.CRITICS_STUDY}: accuracy(bilinear) and accuracy(separable) > accuracy(MLP '
         'critic), while I_NWJ(MLP critic) is the highest.',
      5: f'{study.ENCODERS_STUDY}: for each estimator and t, accuracy(ConvNet) > accuracy(MLP) '
         'at matched I_EST.',
      6: f'{study.sec4_setting("noniid", "infonce")}: the non-i.i.d. estimates lie clearly '
         'above the true MI (0.0204) for both estimators, while the i.i.d. ones do not exceed '
         'it beyond their noise.',
  }[claim_id]


def __getattr__(name):
  """``CLAIM_TEXT``: {claim id: claim_text(id)}, built when read (it follows the study)."""
  if name == 'CLAIM_TEXT':
    return {i: claim_text(i) for i in range(1, 7)}
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _num(row, scale=1.0, digits=4):
  """'mean ± sd (n=k)' of a table row."""
  if row is None:
    return 'missing'
  mean = row['mean'] * scale
  text = _fixed(mean, digits)
  if row['n'] > 1 and math.isfinite(row['sd']):
    text += f' ± {_fixed(row["sd"] * scale, digits)}'
  return text + f' (n={row["n"]})'


def _fixed(x, digits):
  """``x`` with ``digits`` decimals; in scientific notation from 1e6 on (e.g. I_NWJ of a
  critic trained with I_NCE, whose exp(scores) overflow the bound to -1e23)."""
  if not math.isfinite(x):
    return str(x)
  return f'{x:.{digits}f}' if abs(x) < 1e6 else f'{x:.{digits}e}'


SEPARATION = 2.0  # Orderings whose mean difference is under 2 SEs are flagged (not failed).


def separation(a, b):
  """(a - b) / SE of the difference of two means over seeds, or None.

  SE = sqrt(sd_a^2 / n_a + sd_b^2 / n_b) (Welch); None unless both rows have >= 2 seeds and
  finite SDs. Used to say how far an ordering of means is from the seed noise; the claims'
  PASS/FAIL stays the ordering of means, as the paper states them.
  """
  if a is None or b is None or a['n'] < 2 or b['n'] < 2:
    return None
  se = math.sqrt(a['sd'] ** 2 / a['n'] + b['sd'] ** 2 / b['n'])
  if not math.isfinite(se) or se == 0.0:
    return None
  return (a['mean'] - b['mean']) / se


class _Check:
  """Collects the sub-checks of one claim."""

  def __init__(self, claim_id):
    self.id = claim_id
    self.results = []   # (description, bool)
    self.missing = []   # settings without data
    self.numbers = []   # (label, text)
    self.n_seeds = {}
    self.notes = []

  def row(self, table, setting, metric, which='final', split='eval'):
    row = (table.final if which == 'final' else table.first)(setting, metric, split)
    if row is None:
      if setting not in self.missing:
        self.missing.append(setting)
    else:
      self.n_seeds[setting] = max(self.n_seeds.get(setting, 0), row['n'])
    return row

  def check(self, description, ok):
    self.results.append((description, bool(ok)))
    return ok

  def order(self, description, greater, smaller):
    """Checks greater['mean'] > smaller['mean'] (rows of the table); the description gets
    the difference in SEs of the seed noise (``separation``) and weak orderings a note."""
    z = separation(greater, smaller)
    ok = greater['mean'] > smaller['mean']
    if z is not None:  # Into the closing parenthesis of "... (a vs b)".
      description = (description[:-1] + f', {z:+.1f} SE)' if description.endswith(')')
                     else description + f' ({z:+.1f} SE)')
      if ok and z < SEPARATION:
        self.notes.append(f'{description.split(" (")[0]}: the means are ordered as claimed, '
                          f'but by {z:.1f} SE of the seed noise (< {SEPARATION:g}): not '
                          'resolved at this number of seeds.')
    return self.check(description, ok)

  def result(self):
    if any(not ok for _, ok in self.results):
      status = FAIL
    elif self.missing or not self.results:
      status = INSUFFICIENT
    else:
      status = PASS
    if self.missing:
      self.notes.append('missing or too few finished runs: ' + ', '.join(self.missing))
    return {'id': self.id, 'claim': claim_text(self.id), 'status': status,
            'checks': [{'check': d, 'ok': ok} for d, ok in self.results],
            'numbers': self.numbers, 'n_seeds': self.n_seeds, 'notes': self.notes}


def claim1(table):
  """Sec. 3.1, Fig. 1a,b: RealNVP (I_NCE and I_NWJ) beats pixels and I_EST rises.

  Decided on both estimators: final probe accuracy (mean over seeds) > the pixel baseline's,
  and final I_EST/test > I_EST/test at step 0. The true MI is not measured: g1 and g2 are
  bijections (RealNVP), so I(g1(X1); g2(X2)) = I(X1; X2) at every step by construction.
  """
  c = _Check(1)
  c.notes.append('True MI is constant by construction: g1, g2 are RealNVP bijections, so '
                 'I(g1(X1); g2(X2)) = I(X1; X2) at every step (not measured).')
  pixel = c.row(table, study.PIXELS, ACC)
  if pixel:
    c.numbers.append(('pixel probe accuracy', _num(pixel)))
  for s in [study.realnvp_setting(est) for est in study.ESTIMATORS]:
    acc = c.row(table, s, ACC)
    i0, i1 = c.row(table, s, 'I_EST/test', 'first'), c.row(table, s, 'I_EST/test')
    if acc is None or i0 is None or i1 is None:
      continue
    c.numbers += [(f'{s} final probe accuracy', _num(acc)),
                  (f'{s} I_EST/test step 0 -> final', f'{_num(i0)} -> {_num(i1)}')]
    if pixel:
      c.order(f'{s}: accuracy > pixels ({acc["mean"]:.4f} vs {pixel["mean"]:.4f})',
              acc, pixel)
    c.check(f'{s}: I_EST rises ({i0["mean"]:.3f} -> {i1["mean"]:.3f})',
            i1['mean'] > i0['mean'])
  return c.result()


def claim2(table):
  """Sec. 3.1, Fig. 1c: the adversarially trained invertible encoder ends below pixels.

  Decided on sec3_1_adversarial (the paper's learning rates): final probe accuracy (mean) <
  the pixel baseline's. sec3_1_adversarial_colab_lr (the Colab's 10x larger rates) is
  reported next to it and does not change the status.
  """
  c = _Check(2)
  adversarial, colab_lr = study.ADVERSARIAL, study.ADVERSARIAL_COLAB_LR
  pixel = c.row(table, study.PIXELS, ACC)
  acc = c.row(table, adversarial, ACC)
  if pixel:
    c.numbers.append(('pixel probe accuracy', _num(pixel)))
  if acc:
    c.numbers.append((f'{adversarial} final probe accuracy', _num(acc)))
    first = table.first(adversarial, ACC)
    c.numbers.append((f'{adversarial} probe accuracy at step 0', _num(first)))
  if acc and pixel:
    c.order(f'{adversarial}: accuracy < pixels ({acc["mean"]:.4f} vs '
            f'{pixel["mean"]:.4f})', pixel, acc)
  colab = table.final(colab_lr, ACC)
  if colab:
    c.numbers.append((f'{colab_lr} final probe accuracy (not deciding)', _num(colab)))
    if pixel:
      c.notes.append('With the Colab\'s learning rates (1e-3 head, 1e-5 encoder) the probe '
                     f'accuracy ends {"below" if colab["mean"] < pixel["mean"] else "above"}'
                     ' the pixel baseline.')
  return c.result()


def claim3(table):
  """Sec. 3.1, Fig. 2 and 5: the residual MLP becomes ill-conditioned while accuracy rises.

  Decided on sec3_1_resmlp (I_NCE, Fig. 2) and sec3_1_resmlp_nwj (I_NWJ, Fig. 5): the
  median over 128 inputs of log cond(J_g1) at the last evaluation > at step 0 (the identity,
  log cond = 0), and the final probe accuracy > the accuracy at step 0 (means over seeds).
  """
  c = _Check(3)
  noisy = table.final(study.PIXELS_NOISY, ACC)
  if noisy:
    c.numbers.append(('noisy-pixel probe accuracy (reference)', _num(noisy)))
  for s in [study.resmlp_setting(est) for est in study.ESTIMATORS]:
    k0 = c.row(table, s, 'jacobian/log_cond_median', 'first')
    k1 = c.row(table, s, 'jacobian/log_cond_median')
    a0, a1 = c.row(table, s, ACC, 'first'), c.row(table, s, ACC)
    if None in (k0, k1, a0, a1):
      continue
    c.numbers += [(f'{s} median log cond step 0 -> final', f'{_num(k0)} -> {_num(k1)}'),
                  (f'{s} probe accuracy step 0 -> final', f'{_num(a0)} -> {_num(a1)}')]
    c.check(f'{s}: median log condition number grows ({k0["mean"]:.3f} -> '
            f'{k1["mean"]:.3f})', k1['mean'] > k0['mean'])
    c.check(f'{s}: accuracy rises ({a0["mean"]:.4f} -> {a1["mean"]:.4f})',
            a1['mean'] > a0['mean'])
  return c.result()


def claim4(table):
  """Sec. 3.2, Fig. 3 and 6: simpler critics give better accuracy at a lower I_NWJ.

  Decided on final means over seeds: for both training estimators, accuracy(bilinear) >
  accuracy(concat) and accuracy(separable) > accuracy(concat); for the critics trained with
  I_NWJ (Fig. 3), I_NWJ/test(concat) > I_NWJ/test of bilinear and separable. (For critics
  trained with I_NCE, I_NWJ is not a meaningful value of the critic, often -inf: InfoNCE
  is invariant to a shift of each row of scores. Their I_NCE values are reported.)
  """
  c = _Check(4)
  for est in ('nwj', 'infonce'):
    names = {k: study.critic_setting(k, est) for k in ('bilinear', 'separable', 'concat')}
    accs = {k: c.row(table, s, ACC) for k, s in names.items()}
    values_metric = 'I_NWJ/test' if est == 'nwj' else 'I_NCE/test'
    values = {k: table.final(s, values_metric) for k, s in names.items()}
    for k in names:
      if accs[k]:
        c.numbers.append((f'{names[k]}: accuracy, {values_metric}',
                          f'{_num(accs[k])}, {_num(values[k], digits=3)}'))
    for k in ('bilinear', 'separable'):
      if accs[k] and accs['concat']:
        c.order(f'{est}: accuracy({k}) > accuracy(concat) ({accs[k]["mean"]:.4f} vs '
                f'{accs["concat"]["mean"]:.4f})', accs[k], accs['concat'])
      if est == 'nwj' and values[k] and values['concat']:
        c.order(f'nwj: I_NWJ(concat) > I_NWJ({k}) ({values["concat"]["mean"]:.3f} vs '
                f'{values[k]["mean"]:.3f})', values['concat'], values[k])
  return c.result()


def claim5(table, tolerance=MATCH_TOLERANCE):
  """Sec. 3.3, Fig. 4a,b: at matched I_EST the ConvNet beats the MLP.

  For each estimator and t in {2, 4}: the pair is matched if both encoders' final
  |I_EST/train - t| <= tolerance * t (I_EST on training examples: what the objective
  |I_EST - t| holds at t, and the Colab's "testing value", which is evaluated on training
  batches); then accuracy(ConvNet) > accuracy(MLP) (means over seeds). An unmatched pair
  fails (the comparison at equal I_EST could not be made). |I_EST/test - t| is reported.
  """
  c = _Check(5)
  c.notes.append(f'matched: |I_EST/train - t| <= {tolerance} t for both encoders')
  for est in ('infonce', 'nwj'):
    for t in (2, 4):
      rows = {}
      for enc in ('mlp', 'convnet'):
        s = study.encoder_setting(enc, est, t)
        rows[enc] = (c.row(table, s, ACC), c.row(table, s, 'I_EST/train'),
                     table.final(s, 'I_EST/test'))
      if any(r is None for enc in rows for r in rows[enc][:2]):
        continue
      gaps = {enc: abs(rows[enc][1]['mean'] - t) for enc in rows}
      for enc in rows:
        test_gap = (f', |I_EST/test - t| = {abs(rows[enc][2]["mean"] - t):.3f}'
                    if rows[enc][2] else '')
        c.numbers.append((f'{est} t={t} {enc}: accuracy; |I_EST/train - t|',
                          f'{_num(rows[enc][0])}; {gaps[enc]:.3f}{test_gap}'))
      matched = all(g <= tolerance * t for g in gaps.values())
      if not matched:
        c.check(f'{est} t={t}: I_EST matched (|I_EST/train - t|: mlp {gaps["mlp"]:.3f}, '
                f'convnet {gaps["convnet"]:.3f}; tolerance {tolerance * t:.2f})', False)
        continue
      acc_c, acc_m = rows['convnet'][0], rows['mlp'][0]
      c.order(f'{est} t={t}: accuracy(ConvNet) > accuracy(MLP) ({acc_c["mean"]:.4f} vs '
              f'{acc_m["mean"]:.4f})', acc_c, acc_m)
  return c.result()


def claim6(table, k=NOISE_FACTOR):
  """Sec. 4, Fig. 4c: non-i.i.d. negatives push I_NCE and I_NWJ above the true MI.

  For each estimator, with the final I_EST/eval of each setting (mean over seeds m, SD over
  seeds s, evaluation standard error e = I_EST/eval_sd / sqrt(eval batches), the same fixed
  batches for all seeds), the noise of one run's estimate is sigma = sqrt(s^2 + e^2):
    i.i.d.:     m - MI <= k sigma        (does not exceed the true MI beyond its noise)
    non-i.i.d.: m - MI >  k sigma        (clearly above)
  with k = 3. The seed spread needs at least 2 seeds per setting: with fewer, the claim is
  INSUFFICIENT_DATA (its numbers are still reported).
  """
  c = _Check(6)
  c.notes.append(f'noise sigma = sqrt(SD over seeds^2 + evaluation SE^2); factor k = {k}')
  for est in ('infonce', 'nwj'):
    for side in ('noniid', 'iid'):
      s = study.sec4_setting(side, est)
      row = c.row(table, s, 'I_EST/eval')
      if row is None:
        continue
      true = table.final(s, 'true_mi')
      mi = true['mean'] if true else TRUE_MI_SEC4
      se_row = table.final(s, 'I_EST/eval_se')
      se = se_row['mean'] if se_row else 0.0
      if row['n'] < 2:
        c.numbers.append((f'{s} final I_EST/eval - true MI (n=1: no seed spread)',
                          f'{row["mean"] - mi:+.5f}'))
        if s not in c.missing:
          c.missing.append(f'{s} (needs >= 2 seeds, has 1)')
        continue
      sigma = math.sqrt(row['sd']**2 + se**2)
      diff = row['mean'] - mi
      c.numbers.append((f'{s}: I_EST/eval, minus true MI, noise sigma (SD seeds, eval SE)',
                        f'{_num(row, digits=5)}, {diff:+.5f}, {sigma:.5f} '
                        f'({row["sd"]:.5f}, {se:.5f})'))
      if side == 'iid':
        c.check(f'{est} i.i.d.: {diff:+.5f} <= {k:g} x {sigma:.5f}', diff <= k * sigma)
        ratio = (lambda x, y: f'{x / y:+.1f}' if y > 0 else 'n/a')
        c.notes.append(f'{s}: the difference to the true MI is {ratio(diff, row["sd"])} SDs '
                       f'over seeds and {ratio(diff, se)} evaluation SEs; a tolerance from '
                       'the seed spread alone would ignore the evaluation sample, which is '
                       'the same for every seed (GaussianToy.eval_seed).')
      else:
        c.check(f'{est} non-i.i.d.: {diff:+.5f} > {k:g} x {sigma:.5f}', diff > k * sigma)
  return c.result()


CLAIMS = (claim1, claim2, claim3, claim4, claim5, claim6)


def check_claims(table):
  return [fn(table) for fn in CLAIMS]

