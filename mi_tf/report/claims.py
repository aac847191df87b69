"""The claim checks of the paper, decided on a results Table by a rule fixed in advance.

``claim1(table, acc)`` ... ``claim6(table)`` (the six claims on MNIST) and, for App. G on
CIFAR-10, ``claim4_cifar10``, ``claim5_cifar10`` (claims 4 and 5 with the same rules on the
CIFAR-10 runs) and ``claim_pixels_cifar10`` (every learned representation ends above the pixel
baseline) -> {id, claim, status, checks, numbers, n_seeds, notes}; the ids are
``study.CLAIM_IDS``. ``check_claims(table)`` runs them all, each claim that reads probe accuracy
twice: with the paper's SAGA probe (``ACC``: ``status``, ``checks``) and with the converged
L-BFGS probe (``ACC_FAST``: ``status_converged``, ``checks_converged``). Each claim asks
``mi_tf.study`` for the names of the settings it reads, when it runs.

The rule (constants below, stated before any result was looked at):

* A claim is a list of comparisons. A comparison orders two quantities, each a mean over
  seeds of a table row or a constant reference (the true MI): "a > b + margin" with
  z = (mean_a - mean_b - margin) / SE, SE = sqrt(sd_a^2 / n_a + sd_b^2 / n_b) over seeds (a
  constant contributes 0). It HOLDS if z >= SEPARATION with at least MIN_SEEDS seeds on every
  side that is a row; it is REVERSED if z <= -SEPARATION with as many seeds (the opposite
  ordering holds by SEPARATION SE); otherwise (fewer seeds on a side, |z| < SEPARATION, or an
  SE or difference that is not finite) it is UNRESOLVED.
* A bound check compares a quantity without a seed noise model (a maximum over seeds, a rank
  correlation, a mean at a tolerance) with a stated bound: HOLDS if within it, REVERSED if not.
* A claim is PASS if every comparison HOLDS; FAIL if any is REVERSED; INSUFFICIENT_DATA if
  none is reversed and a setting or metric it reads is missing; INCONCLUSIVE otherwise. A
  comparison on one seed is never HOLDS, so a claim decided on one seed is never PASS.
"""

import math

import numpy as np

from mi_tf import study
from mi_tf.report.results import ACC
from mi_tf.report.results import ACC_FAST
from mi_tf.report.results import ACC_KNN

# 0.0204 nats: the paper's Sec. 4 (covariance [[2, .4], [.4, 2]], correlation rho = 0.2).
TRUE_MI_SEC4 = -0.5 * math.log(1 - 0.2**2)

# The status rule.
MIN_SEEDS = 3        # Seeds on each side of a comparison (that has a seed spread).
SEPARATION = 2.0     # |z| in standard errors of the seed noise to decide a comparison.

# Claim tolerances and margins, fixed before looking at results (see the claim functions).
RECONSTRUCTION_TOLERANCE = 1e-3  # Claim 1: max |g1^-1(g1(x)) - x| at every evaluation.
LOG_DET_TOLERANCE = 1e-3         # Claim 1: |mean log |det J_g1|| (additive flow: exactly 0).
LOG_COND_GROWTH = 1.0            # Claim 3: median log cond grows by >= 1 nat, by 2 SE.
MIN_SPEARMAN = 0.8               # Claim 3: rank correlation of the log cond with the step.
MATCH_TOLERANCE = 0.05           # Claim 5: |I_EST/train - t| <= 0.05 nats for both encoders.
IID_PRECISION = 0.002            # Claim 6: the SE an i.i.d. estimate needs (10% of the MI).
# App. G: the paper's CIFAR-10 pixel baseline ("about 24%"), quoted beside the measured one
# (the claim compares with the measured baseline; this constant decides nothing).
PAPER_PIXELS_CIFAR10 = 0.24

PASS, FAIL, INCONCLUSIVE, INSUFFICIENT = 'PASS', 'FAIL', 'INCONCLUSIVE', 'INSUFFICIENT_DATA'
HOLDS, REVERSED, UNRESOLVED = 'HOLDS', 'REVERSED', 'UNRESOLVED'

# The probe protocols every claim that reads probe accuracy is decided under: the paper's
# SAGA probe, the converged L-BFGS probe, and (beyond the paper) the k-NN probe (k = 20,
# cosine; step 0 and final evaluation only; runs without it: INSUFFICIENT_DATA there).
PROTOCOLS = {'paper': ACC, 'converged': ACC_FAST, 'knn': ACC_KNN}


def claim_text(claim_id):
  """The statement of a claim, naming its settings as ``mi_tf.study`` names them now."""
  cifar10 = study.CIFAR10_PREFIX
  return {
      1: f'{study.realnvp_setting("infonce")}: final probe accuracy > step 0 and > pixel '
         'baseline, and I_EST rises, while g1 stays invertible (measured).',
      2: f'{study.ADVERSARIAL}: the separately trained probe\'s test accuracy ends below the '
         'pixel baseline and below its step-0 value.',
      3: f'{study.resmlp_setting("infonce")}: median log condition number grows (by >= 1 nat, '
         'steadily) over training while accuracy rises.',
      4: f'{study.CRITICS_STUDY}: accuracy(bilinear) and accuracy(separable) > accuracy(MLP '
         'critic), while I_NWJ(MLP critic) is the highest.',
      5: f'{study.ENCODERS_STUDY}: for each estimator and t, accuracy(ConvNet) > accuracy(MLP) '
         'at matched I_EST.',
      6: f'{study.sec4_setting("noniid", "infonce")}: the non-i.i.d. estimates lie above the '
         'true MI (0.0204) for both estimators, while the i.i.d. ones are at or below it.',
      study.CIFAR10_CLAIM_4: f'{cifar10}{study.CRITICS_STUDY} (App. G, Fig. 8): claim 4 on '
                             'CIFAR-10, accuracy(bilinear) and accuracy(separable) > '
                             'accuracy(MLP critic), while I_NWJ(MLP critic) is the highest.',
      study.CIFAR10_CLAIM_5: f'{cifar10}{study.ENCODERS_STUDY} (App. G, Fig. 9): claim 5 on '
                             'CIFAR-10, for each estimator and t, accuracy(ConvNet) > '
                             'accuracy(MLP) at matched I_EST.',
      study.CIFAR10_CLAIM_PIXELS: f'{study.PIXELS_CIFAR10} (App. G, Figs. 8 and 9): every '
                                  'learned CIFAR-10 representation (the 6 critic and 8 encoder '
                                  'settings) ends above the pixel baseline measured here (the '
                                  f'paper: pixels about {PAPER_PIXELS_CIFAR10:.0%}, '
                                  'representations 26-36%).',
      study.BOUNDS_CLAIM: bounds_claim_text(),
      study.METRIC_CLAIM: claim_text_metric(),
      study.NEGATIVES_CLAIM: claim_text_negatives(),
  }[claim_id]


def __getattr__(name):
  """``CLAIM_TEXT``: {claim id: claim_text(id)}, built when read (it follows the study)."""
  if name == 'CLAIM_TEXT':
    return {i: claim_text(i) for i in study.CLAIM_IDS}
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


# ------------------------------------------------------------------ the rule

def constant(value):
  """A constant reference (e.g. the true MI) as a row: no seed noise (SE 0)."""
  return {'mean': float(value), 'sd': 0.0, 'n': None}


def _se_term(row):
  return 0.0 if row['n'] is None else row['sd'] ** 2 / row['n']


def separation(a, b, margin=0.0):
  """z = (mean_a - mean_b - margin) / SE, SE = sqrt(sd_a^2/n_a + sd_b^2/n_b) (Welch), or None.

  A ``constant`` side contributes 0 to the SE. None unless every row side has >= 2 seeds
  and the SE is finite; +-inf for a non-zero difference with SE 0 (seeds that agree exactly).
  """
  if a is None or b is None or any(r['n'] is not None and r['n'] < 2 for r in (a, b)):
    return None
  with np.errstate(invalid='ignore', over='ignore'):
    se = math.sqrt(_se_term(a) + _se_term(b))
    diff = a['mean'] - b['mean'] - margin
  if not (math.isfinite(se) and math.isfinite(diff)):
    return None
  if se == 0.0:
    return None if diff == 0.0 else math.copysign(math.inf, diff)
  return diff / se


def compare(a, b, margin=0.0):
  """The state of "a > b + margin" (rows or ``constant``s): HOLDS, REVERSED or UNRESOLVED.

  HOLDS if z >= SEPARATION and every row side has >= MIN_SEEDS seeds; REVERSED if
  z <= -SEPARATION with as many seeds; UNRESOLVED otherwise. Returns (state, z or None).
  """
  z = separation(a, b, margin)
  enough = all(r['n'] is None or r['n'] >= MIN_SEEDS for r in (a, b))
  if z is None or not enough:
    return UNRESOLVED, z
  if z >= SEPARATION:
    return HOLDS, z
  if z <= -SEPARATION:
    return REVERSED, z
  return UNRESOLVED, z


def _n(row):
  return 'const' if row['n'] is None else str(row['n'])


def _z(z):
  return 'no SE' if z is None else f'{z:+.1f} SE'


def spearman(x, y):
  """Spearman's rank correlation of two sequences (ties get their mean rank); NaN if either
  is constant or they have fewer than 2 points."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if len(x) != len(y) or len(x) < 2:
    return float('nan')
  rx, ry = _ranks(x), _ranks(y)
  if np.std(rx) == 0 or np.std(ry) == 0:
    return float('nan')
  return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(a):
  order = np.argsort(a, kind='mergesort')
  ranks = np.empty(len(a), np.float64)
  ranks[order] = np.arange(1, len(a) + 1)
  for value in np.unique(a):  # Ties: their mean rank.
    tied = a == value
    if tied.sum() > 1:
      ranks[tied] = ranks[tied].mean()
  return ranks


def claim_status(states, missing=False):
  """PASS if every state HOLDS, FAIL if any is REVERSED, INSUFFICIENT_DATA if data is missing
  (and none is reversed), INCONCLUSIVE otherwise."""
  if REVERSED in states:
    return FAIL
  if missing or not states:
    return INSUFFICIENT
  if all(s == HOLDS for s in states):
    return PASS
  return INCONCLUSIVE


class _Check:
  """Collects the comparisons of one claim."""

  def __init__(self, claim_id, acc=ACC):
    self.id = claim_id
    self.acc = acc
    self.results = []   # {check, state, z}
    self.missing = []   # settings (or 'setting (metric)') without data
    self.numbers = []   # (label, text)
    self.n_seeds = {}
    self.notes = []

  def need(self, table, setting, metric, split='eval'):
    """Marks a missing (setting, metric): the setting if it has no data at all."""
    what = (setting if setting not in table.settings() else f'{setting} ({metric}, {split})')
    if what not in self.missing:
      self.missing.append(what)

  def row(self, table, setting, metric, which='final', split='eval'):
    row = (table.final if which == 'final' else table.first)(setting, metric, split)
    if row is None:
      self.need(table, setting, metric, split)
    else:
      self.n_seeds[setting] = max(self.n_seeds.get(setting, 0), row['n'])
    return row

  def add(self, description, state, z=None, rows=()):
    """Records a check; ``rows`` (table rows) name the settings whose seeds decide it."""
    settings = sorted({r['setting'] for r in rows if r is not None and 'setting' in r})
    self.results.append({'check': description, 'state': state, 'ok': state == HOLDS, 'z': z,
                         'settings': settings})
    return state

  def order(self, label, greater, smaller, margin=0.0, digits=4, less=False):
    """Adds "greater > smaller + margin" decided by ``compare``; the description reads
    "label (a vs b[, margin m], +z SE, n=3 vs 3)", a and b in the order of the label
    (``less``: a label "smaller < greater"); z > 0 is the claimed direction."""
    state, z = compare(greater, smaller, margin)
    m = f', margin {margin:g}' if margin else ''
    a, b = (smaller, greater) if less else (greater, smaller)
    return self.add(f'{label} ({_fixed(a["mean"], digits)} vs {_fixed(b["mean"], digits)}{m}, '
                    f'{_z(z)}, n={_n(a)} vs {_n(b)})', state, z, rows=(greater, smaller))

  def bound(self, label, ok, detail):
    """A bound check: HOLDS if ``ok`` (None: UNRESOLVED), else REVERSED."""
    state = UNRESOLVED if ok is None else (HOLDS if ok else REVERSED)
    return self.add(f'{label} ({detail})', state)

  def result(self):
    status = claim_status([r['state'] for r in self.results], bool(self.missing))
    notes = list(self.notes)
    if self.missing:
      notes.append('missing (no finished runs, or a metric they do not log): '
                   + ', '.join(self.missing))
    return {'id': self.id, 'claim': claim_text(self.id), 'status': status,
            'checks': self.results, 'numbers': self.numbers, 'n_seeds': self.n_seeds,
            'notes': notes, 'probe': self.acc}


def _steps_bound(c, table, setting, metric, tolerance, label):
  """Bound check: max over seeds of |metric| <= tolerance at EVERY evaluation step."""
  curve = table.curve(setting, metric)
  if not curve:
    c.need(table, setting, metric)
    return
  worst = max(max(abs(r['min']), abs(r['max'])) for r in curve.values())
  worst_step = max(curve, key=lambda s: max(abs(curve[s]['min']), abs(curve[s]['max'])))
  ok = math.isfinite(worst) and worst <= tolerance
  c.bound(f'{setting}: {label} <= {tolerance:g} at every evaluation', ok,
          f'worst {worst:.2e} at step {worst_step}, {len(curve)} evaluations, max over '
          f'{max(r["n"] for r in curve.values())} seeds')


# ------------------------------------------------------------------ the claims

def claim1(table, acc=ACC):
  """Sec. 3.1, Fig. 1a,b: RealNVP (I_NCE and I_NWJ) beats pixels, I_EST rises, g1 invertible.

  For both estimators:
    final accuracy > step-0 accuracy, final accuracy > the pixel baseline's (by 2 SE);
    final I_EST/test > step-0 I_EST/test (by 2 SE);
    invertibility, measured at every evaluation on a fixed set of test inputs (bounds):
      invertibility/max_reconstruction_error (max |g1^-1(g1(x)) - x|, max over seeds)
        <= RECONSTRUCTION_TOLERANCE = 1e-3 at every step, and
      |invertibility/mean_log_det_jacobian| (any seed) <= LOG_DET_TOLERANCE = 1e-3 at every
        step (an additive flow is volume preserving: exactly 0).
  With g1, g2 bijections I(g1(X1); g2(X2)) = I(X1; X2) at every step, so a rising I_EST and
  a rising accuracy are not a rising MI. Runs without the invertibility metrics: missing.
  """
  c = _Check(1, acc)
  pixel = c.row(table, study.PIXELS, acc)
  if pixel:
    c.numbers.append(('pixel probe accuracy', _num(pixel)))
  for s in [study.realnvp_setting(est) for est in study.ESTIMATORS]:
    a0, a1 = c.row(table, s, acc, 'first'), c.row(table, s, acc)
    i0, i1 = c.row(table, s, 'I_EST/test', 'first'), c.row(table, s, 'I_EST/test')
    if a0 and a1:
      c.numbers.append((f'{s} probe accuracy step 0 -> final', f'{_num(a0)} -> {_num(a1)}'))
      c.order(f'{s}: final accuracy > step 0', a1, a0)
      if pixel:
        c.order(f'{s}: final accuracy > pixels', a1, pixel)
    if i0 and i1:
      c.numbers.append((f'{s} I_EST/test step 0 -> final', f'{_num(i0)} -> {_num(i1)}'))
      c.order(f'{s}: final I_EST/test > step 0', i1, i0, digits=3)
    _steps_bound(c, table, s, 'invertibility/max_reconstruction_error',
                 RECONSTRUCTION_TOLERANCE, 'max |g1^-1(g1(x)) - x|')
    _steps_bound(c, table, s, 'invertibility/mean_log_det_jacobian', LOG_DET_TOLERANCE,
                 '|mean log |det J_g1||')
  return c.result()


def _adversarial_check(c, table, setting, pixel, acc):
  a0, a1 = c.row(table, setting, acc, 'first'), c.row(table, setting, acc)
  if a0 and a1:
    c.numbers.append((f'{setting} probe accuracy step 0 -> final', f'{_num(a0)} -> {_num(a1)}'))
    if pixel:
      c.order(f'{setting}: final accuracy < pixels', pixel, a1, less=True)
    c.order(f'{setting}: final accuracy < step 0', a0, a1, less=True)


def claim2(table, acc=ACC):
  """Sec. 3.1, Fig. 1c: the adversarially trained invertible encoder ends below pixels.

  Decided on study.ADVERSARIAL (the paper's learning rates): pixel accuracy > final accuracy
  and step-0 accuracy > final accuracy (by 2 SE). study.ADVERSARIAL_COLAB_LR (the learning
  rates of the authors' code, 10x larger) gets its own verdict by the same comparisons
  (``colab_status``, ``colab_checks``), which does not decide the claim.
  """
  c = _Check(2, acc)
  pixel = c.row(table, study.PIXELS, acc)
  if pixel:
    c.numbers.append(('pixel probe accuracy', _num(pixel)))
  _adversarial_check(c, table, study.ADVERSARIAL, pixel, acc)
  colab = _Check(2, acc)
  colab_pixel = colab.row(table, study.PIXELS, acc)
  _adversarial_check(colab, table, study.ADVERSARIAL_COLAB_LR, colab_pixel, acc)
  colab_result = colab.result()
  c.numbers += [(f'{label} (not deciding)', text) for label, text in colab.numbers]
  out = c.result()
  out.update(colab_status=colab_result['status'], colab_checks=colab_result['checks'],
             colab_setting=study.ADVERSARIAL_COLAB_LR)
  return out


def claim3(table, acc=ACC):
  """Sec. 3.1, Fig. 2 and 5: the residual MLP becomes ill-conditioned while accuracy rises.

  For the residual MLP trained with I_NCE (Fig. 2) and with I_NWJ (Fig. 5), on the median
  over 128 inputs of log cond(J_g1) (jacobian/log_cond_median):
    final - step 0 >= LOG_COND_GROWTH = 1 nat, by 2 SE (margin 1.0);
    it grows with training: Spearman's rank correlation of the evaluation step with the mean
      curve over seeds, over all evaluations, >= MIN_SPEARMAN = 0.8 (a bound; needs >= 3
      evaluations, else unresolved);
    final accuracy > step-0 accuracy (by 2 SE).
  """
  c = _Check(3, acc)
  noisy = table.final(study.PIXELS_NOISY, acc)
  if noisy:
    c.numbers.append(('noisy-pixel probe accuracy (reference)', _num(noisy)))
  for s in [study.resmlp_setting(est) for est in study.ESTIMATORS]:
    k0 = c.row(table, s, 'jacobian/log_cond_median', 'first')
    k1 = c.row(table, s, 'jacobian/log_cond_median')
    a0, a1 = c.row(table, s, acc, 'first'), c.row(table, s, acc)
    if k0 and k1:
      c.numbers.append((f'{s} median log cond step 0 -> final', f'{_num(k0)} -> {_num(k1)}'))
      c.order(f'{s}: final median log cond > step 0 + {LOG_COND_GROWTH:g}', k1, k0,
              margin=LOG_COND_GROWTH, digits=3)
      curve = table.curve(s, 'jacobian/log_cond_median')
      steps = [st for st in sorted(curve) if math.isfinite(curve[st]['mean'])]
      rho = spearman(steps, [curve[st]['mean'] for st in steps])
      ok = None if len(steps) < 3 or not math.isfinite(rho) else rho >= MIN_SPEARMAN
      c.bound(f'{s}: median log cond grows with training', ok,
              f'Spearman {rho:.2f} over {len(steps)} evaluations, bound {MIN_SPEARMAN:g}')
    if a0 and a1:
      c.numbers.append((f'{s} probe accuracy step 0 -> final', f'{_num(a0)} -> {_num(a1)}'))
      c.order(f'{s}: final accuracy > step 0', a1, a0)
  return c.result()


def claim4(table, acc=ACC, dataset='mnist'):
  """Sec. 3.2, Fig. 3 and 6 (App. G, Fig. 8 with dataset='cifar10'): simpler critics give
  better accuracy at a lower I_NWJ.

  By 2 SE on final values: for both training estimators, accuracy(bilinear) >
  accuracy(concat) and accuracy(separable) > accuracy(concat); for the critics trained with
  I_NWJ (Fig. 3), I_NWJ/test(concat) > I_NWJ/test of bilinear and separable. (For critics
  trained with I_NCE, I_NWJ is not a meaningful value of the critic, often -inf: InfoNCE
  is invariant to a shift of each row of scores. Their I_NCE values are reported.)
  """
  c = _Check(4 if dataset == 'mnist' else study.CIFAR10_CLAIM_4, acc)
  for est in ('nwj', 'infonce'):
    names = {k: study.critic_setting(k, est, dataset)
             for k in ('bilinear', 'separable', 'concat')}
    accs = {k: c.row(table, s, acc) for k, s in names.items()}
    values_metric = 'I_NWJ/test' if est == 'nwj' else 'I_NCE/test'
    values = {k: (c.row(table, s, values_metric) if est == 'nwj'
                  else table.final(s, values_metric)) for k, s in names.items()}
    for k in names:
      if accs[k]:
        c.numbers.append((f'{names[k]}: accuracy, {values_metric}',
                          f'{_num(accs[k])}, {_num(values[k], digits=3)}'))
    for k in ('bilinear', 'separable'):
      if accs[k] and accs['concat']:
        c.order(f'{est}: accuracy({k}) > accuracy(concat)', accs[k], accs['concat'])
      if est == 'nwj' and values[k] and values['concat']:
        c.order(f'nwj: I_NWJ(concat) > I_NWJ({k})', values['concat'], values[k], digits=3)
  return c.result()


def claim5(table, acc=ACC, tolerance=MATCH_TOLERANCE, dataset='mnist'):
  """Sec. 3.3, Fig. 4a,b (App. G, Fig. 9 with dataset='cifar10'): at matched I_EST the
  ConvNet beats the MLP.

  For each estimator and t in {2, 4}: the pair is matched if both encoders' final
  |mean over seeds of I_EST/train - t| <= MATCH_TOLERANCE = 0.05 nats (a bound; I_EST on
  training examples: what the objective |I_EST - t| holds at t, and the authors' code's
  "testing value", which is evaluated on training batches); an unmatched pair is a reversed
  bound (the comparison at equal I_EST could not be made). For a matched pair,
  accuracy(ConvNet) > accuracy(MLP) by 2 SE. |I_EST/test - t| is reported.
  """
  c = _Check(5 if dataset == 'mnist' else study.CIFAR10_CLAIM_5, acc)
  c.notes.append(f'matched: |I_EST/train - t| <= {tolerance:g} nats for both encoders')
  for est in ('infonce', 'nwj'):
    for t in (2, 4):
      rows = {}
      for enc in ('mlp', 'convnet'):
        s = study.encoder_setting(enc, est, t, dataset)
        rows[enc] = (c.row(table, s, acc), c.row(table, s, 'I_EST/train'),
                     table.final(s, 'I_EST/test'))
      if any(r is None for enc in rows for r in rows[enc][:2]):
        continue
      gaps = {enc: abs(rows[enc][1]['mean'] - t) for enc in rows}
      for enc in rows:
        test_gap = (f', |I_EST/test - t| = {abs(rows[enc][2]["mean"] - t):.3f}'
                    if rows[enc][2] else '')
        c.numbers.append((f'{est} t={t} {enc}: accuracy; |I_EST/train - t|',
                          f'{_num(rows[enc][0])}; {gaps[enc]:.3f}{test_gap}'))
      matched = all(g <= tolerance for g in gaps.values())
      c.bound(f'{est} t={t}: I_EST matched', matched,
              f'|I_EST/train - t|: mlp {gaps["mlp"]:.3f}, convnet {gaps["convnet"]:.3f}; '
              f'tolerance {tolerance:g}')
      if matched:
        c.order(f'{est} t={t}: accuracy(ConvNet) > accuracy(MLP)', rows['convnet'][0],
                rows['mlp'][0])
  return c.result()


def claim6(table, acc=None):
  """Sec. 4, Fig. 4c: non-i.i.d. negatives push I_NCE and I_NWJ above the true MI.

  For each estimator, with m = final I_EST/eval, mean over seeds, SE = SD over seeds /
  sqrt(n) (every seed draws its own evaluation batches, so the seed spread contains the
  evaluation noise), MI = the true MI (the runs' true_mi metric, else 0.0204), z = (m - MI)/SE
  and >= MIN_SEEDS seeds per setting:
    non-i.i.d. ("above"):  HOLDS if z >= 2; REVERSED if z <= -2; else UNRESOLVED.
    i.i.d. ("at or below"): HOLDS if z < 2 and SE <= IID_PRECISION = 0.002 nats (10% of the
      true MI: an estimate that noisy could not tell); REVERSED if z >= 2; else UNRESOLVED.
  The within-run evaluation SE (I_EST/eval_se) is reported. ``acc`` is unused (no probe).
  """
  del acc
  c = _Check(6, None)
  c.notes.append(f'SE = SD over seeds / sqrt(n); i.i.d. needs SE <= {IID_PRECISION:g} nats')
  for est in ('infonce', 'nwj'):
    for side in ('noniid', 'iid'):
      s = study.sec4_setting(side, est)
      row = c.row(table, s, 'I_EST/eval')
      if row is None:
        continue
      true = table.final(s, 'true_mi')
      mi = true['mean'] if true else TRUE_MI_SEC4
      se_row = table.final(s, 'I_EST/eval_se')
      eval_se = f'{se_row["mean"]:.5f}' if se_row else 'n/a'
      n = row['n']
      se = row['sd'] / math.sqrt(n) if n > 1 else float('nan')
      diff = row['mean'] - mi
      z = separation(row, constant(mi))
      c.numbers.append((f'{s}: I_EST/eval, minus true MI, SE over seeds, evaluation SE',
                        f'{_num(row, digits=5)}, {diff:+.5f}, {se:.5f}, {eval_se}'))
      detail = f'{diff:+.5f} nats, {_z(z)}, SE {se:.5f}, n={n}'
      if side == 'noniid':
        state, z = compare(row, constant(mi))
        c.add(f'{est} non-i.i.d.: above the true MI ({detail})', state, z, rows=(row,))
        continue
      if z is None or n < MIN_SEEDS:
        state = UNRESOLVED
      elif z >= SEPARATION:
        state = REVERSED
      elif se <= IID_PRECISION:
        state = HOLDS
      else:
        state = UNRESOLVED
      c.add(f'{est} i.i.d.: at or below the true MI ({detail}, precision '
            f'{IID_PRECISION:g})', state, z, rows=(row,))
  return c.result()


def claim4_cifar10(table, acc=ACC):
  """App. G, Fig. 8: claim 4 (``claim4``) with the same rules on the CIFAR-10 runs."""
  return claim4(table, acc, dataset='cifar10')


def claim5_cifar10(table, acc=ACC):
  """App. G, Fig. 9: claim 5 (``claim5``) with the same rules on the CIFAR-10 runs."""
  return claim5(table, acc, dataset='cifar10')


def claim_pixels_cifar10(table, acc=ACC):
  """App. G, Figs. 8 and 9: every learned CIFAR-10 representation ends above the pixels.

  The paper's axes put the pixel probe at about 24% and every representation of Figs. 8 and
  9 at 26-36%. For each of the 6 critic and 8 encoder settings on CIFAR-10: final accuracy >
  the pixel baseline measured here (``study.PIXELS_CIFAR10``: the stated probe protocol on the
  16x32x3 RGB top halves, over probe seeds), by 2 SE. A setting below the baseline by 2 SE
  fails the claim; with 1 seed of a setting its comparison is unresolved. The margin over the
  paper's 24% (``PAPER_PIXELS_CIFAR10``) is reported, not decided on.
  """
  c = _Check(study.CIFAR10_CLAIM_PIXELS, acc)
  pixel = c.row(table, study.PIXELS_CIFAR10, acc)
  if pixel:
    c.numbers.append(('pixel probe accuracy (measured; the paper: about '
                      f'{PAPER_PIXELS_CIFAR10:.0%})', _num(pixel)))
  for s in study.critic_settings('cifar10') + study.encoder_settings('cifar10'):
    a = c.row(table, s, acc)
    if a is None:
      continue
    above_paper = (a['mean'] - PAPER_PIXELS_CIFAR10) * 100
    c.numbers.append((f'{s}: accuracy; minus the paper\'s pixels',
                      f'{_num(a)}; {above_paper:+.2f} points'))
    if pixel:
      c.order(f'{s}: accuracy > pixels', a, pixel)
  return c.result()


# ------------------------------------------------- beyond the paper: metric learning, negatives

# Claim K: a metric-learning objective is "as good as I_NCE" unless its accuracy is lower by
# more than 1 point (0.01) at 2 SE: a non-inferiority margin, fixed before any result.
NONINFERIORITY_MARGIN = 0.01


def claim_text_metric():
  """The statement of study.METRIC_CLAIM (claim_metric_learning), naming the study's settings."""
  objectives = ', '.join(study.METRIC_OBJECTIVES)
  return (f'{study.METRIC_PREFIX}* (beyond the paper; Sec. 4, App. C): the metric-learning view '
          f'predicts that metric-learning objectives ({objectives}) learn representations as '
          f'good as I_NCE\'s: for each encoder ({", ".join(study.ENCODERS)}) and objective, '
          f'accuracy(objective) > accuracy(I_NCE, the same encoder) - '
          f'{NONINFERIORITY_MARGIN:g}.')


def claim_text_negatives():
  """The statement of study.NEGATIVES_CLAIM (claim_negatives), naming the study's settings."""
  ks = study.NEGATIVES_BATCH_SIZES
  return (f'{study.NEGATIVES_PREFIX}* (beyond the paper; Sec. 4, App. C): more negatives give a '
          f'better representation (accuracy rises with K = {ks[0]} ... {ks[-1]}, the I_NCE '
          f'batch size), and hard negatives beat random ones '
          f'({study.mining_setting("hard")} vs {study.mining_setting("random")}).')


def claim_metric_learning(table, acc=ACC):
  """Beyond the paper (Sec. 4, App. C): metric-learning objectives are as good as I_NCE.

  For each encoder of study.ENCODERS (mlp, convnet) and each objective of
  study.METRIC_OBJECTIVES (K-pair loss with a shared and with separate encoders, triplet
  loss), on final accuracies: accuracy(objective) > accuracy(I_NCE reference of the same
  encoder, ``study.metric_setting('infonce', enc)``) - NONINFERIORITY_MARGIN (0.01), i.e.
  ``compare(objective, reference, margin=-0.01)``: HOLDS when the objective is not worse by
  more than 1 point at 2 SE, REVERSED when it is worse by more than 1 point at 2 SE. The
  I_NWJ references' accuracies and every setting's I_NCE/test are reported, not decided on.
  """
  c = _Check(study.METRIC_CLAIM, acc)
  c.notes.append(f'non-inferiority margin {NONINFERIORITY_MARGIN:g} (accuracy(objective) > '
                 f'accuracy(I_NCE) - {NONINFERIORITY_MARGIN:g}, by 2 SE)')
  for enc in study.ENCODERS:
    ref_setting = study.metric_setting('infonce', enc)
    ref = c.row(table, ref_setting, acc)
    nwj_setting = study.metric_setting('nwj', enc)
    for label, setting, row in (('I_NCE reference', ref_setting, ref),
                                ('I_NWJ reference (not deciding)', nwj_setting,
                                 table.final(nwj_setting, acc))):
      if row:
        c.numbers.append((f'{enc} {label} {setting}: accuracy, I_NCE/test',
                          f'{_num(row)}, {_num(table.final(setting, "I_NCE/test"), digits=3)}'))
    for obj in study.METRIC_OBJECTIVES:
      setting = study.metric_setting(obj, enc)
      row = c.row(table, setting, acc)
      if row is None:
        continue
      c.numbers.append((f'{enc} {obj} {setting}: accuracy, I_NCE/test',
                        f'{_num(row)}, {_num(table.final(setting, "I_NCE/test"), digits=3)}'))
      if ref:
        c.order(f'{enc}: accuracy({obj}) > accuracy(I_NCE) - {NONINFERIORITY_MARGIN:g}', row,
                ref, margin=-NONINFERIORITY_MARGIN)
  return c.result()


def claim_negatives(table, acc=ACC):
  """Beyond the paper (Sec. 4, App. C): more negatives, and harder ones, give a better
  representation.

  On final accuracies, by the usual rule (2 SE, >= MIN_SEEDS seeds a side):
    accuracy(K = 512) > accuracy(K = 16) (``study.negatives_setting``: I_NCE over batches of
      K, the bilinear critic, MLP encoders);
    accuracy(hard) > accuracy(random) (``study.mining_setting``: each row of a 512 batch keeps
      127 of its 511 negatives, the highest-scoring or random ones; I_NCE over K = 128);
  and a bound: Spearman's rank correlation of the mean accuracy over seeds with K, over the
  six batch sizes of study.NEGATIVES_BATCH_SIZES, >= MIN_SPEARMAN (0.8) (unresolved unless
  all six have a finite mean). Reported: accuracy, I_NCE/test (over blocks of the evaluation
  batch size, 128) and the final training-batch I_EST (over K columns, <= log K) per K.
  """
  c = _Check(study.NEGATIVES_CLAIM, acc)
  accs = {}
  for k in study.NEGATIVES_BATCH_SIZES:
    setting = study.negatives_setting(k)
    row = c.row(table, setting, acc)
    if row is None:
      continue
    accs[k] = row
    train = table.final(setting, 'I_EST', split='train')
    c.numbers.append((f'K={k} {setting}: accuracy; I_NCE/test; training I_EST; log K',
                      f'{_num(row)}; {_num(table.final(setting, "I_NCE/test"), digits=3)}; '
                      f'{_num(train, digits=3)}; {math.log(k):.3f}'))
  small, large = min(study.NEGATIVES_BATCH_SIZES), max(study.NEGATIVES_BATCH_SIZES)
  if small in accs and large in accs:
    c.order(f'accuracy(K={large}) > accuracy(K={small})', accs[large], accs[small])
  mined = {m: c.row(table, study.mining_setting(m), acc) for m in study.MINING}
  for m, row in mined.items():
    if row:
      setting = study.mining_setting(m)
      c.numbers.append((f'{m} negatives {setting}: accuracy; I_NCE/test',
                        f'{_num(row)}; {_num(table.final(setting, "I_NCE/test"), digits=3)}'))
  if mined['hard'] and mined['random']:
    c.order('accuracy(hard negatives) > accuracy(random negatives)', mined['hard'],
            mined['random'])
  points = [k for k in study.NEGATIVES_BATCH_SIZES
            if k in accs and math.isfinite(accs[k]['mean'])]
  if len(points) >= 2:
    rho = spearman(points, [accs[k]['mean'] for k in points])
    complete = len(points) == len(study.NEGATIVES_BATCH_SIZES) and math.isfinite(rho)
    c.bound('accuracy rises with K', rho >= MIN_SPEARMAN if complete else None,
            f'Spearman {rho:.2f} over {len(points)} of {len(study.NEGATIVES_BATCH_SIZES)} '
            f'batch sizes, bound {MIN_SPEARMAN:g}')
  return c.result()


# ------------------------------------------------------------------ beyond the paper

def bounds_claim_text():
  """The statement of study.BOUNDS_CLAIM (``claim_bounds``), naming the study's settings."""
  return (f'{study.CRITICS_STUDY}_<critic>_<estimator> (beyond the paper), the family of '
          f'bounds ({", ".join(study.BOUND_ESTIMATORS)}) x {len(study.CRITICS)} critics: of '
          'two settings trained with lower bounds whose final I_EST/test differ by 2 SE, the '
          'tighter (higher) one has the higher final probe accuracy (not lower bounds, not '
          f'compared: {", ".join(study.NOT_LOWER_BOUNDS)}).')


def _bound_family_settings():
  """[(estimator, critic, setting)] of study.bound_critic_settings(), estimator-major."""
  return [(e, k, study.critic_setting(k, e)) for e in study.BOUND_ESTIMATORS
          for k in study.CRITICS]


def claim_bounds(table, acc=ACC):
  """Beyond the paper: does a tighter bound give a better representation?

  Over the Sec. 3.2 family settings (study.bound_critic_settings(): every estimator of
  study.BOUND_ESTIMATORS x the 3 critics) whose estimator is a lower bound on MI (not in
  study.NOT_LOWER_BOUNDS: SMILE is left out), for every unordered pair (a, b) whose final
  I_EST/test (the trained bound's own value, mean over seeds) is ordered by ``compare`` (|z| >=
  SEPARATION with >= MIN_SEEDS seeds on each side), the tighter side t (the higher I_EST) and
  the other l: the claim predicts accuracy(t) > accuracy(l), one comparison per such pair
  (HOLDS / REVERSED / UNRESOLVED by the same rule). A pair whose bounds are not ordered makes
  no comparison. Each run's representation is its own, so "tighter" means a higher certified
  MI of that run's representation, not a bound closer to one common MI.

  Status as ``claim_status``: PASS iff every comparison HOLDS, FAIL if any is REVERSED,
  INSUFFICIENT_DATA if a setting or metric is missing (and none is reversed), INCONCLUSIVE
  otherwise, and INCONCLUSIVE when no pair has an ordered bound (said in the notes).
  Reported, deciding nothing: Spearman's rank correlation of mean I_EST/test with mean
  accuracy over the lower-bound settings with both finite, the counts of HOLDS, REVERSED and
  UNRESOLVED, and SMILE's numbers.
  """
  c = _Check(study.BOUNDS_CLAIM, acc)
  rows = {}
  for est, _, s in _bound_family_settings():
    lower = est not in study.NOT_LOWER_BOUNDS
    # A setting that decides nothing (SMILE) is reported when present, never missing.
    get = (lambda s, m: c.row(table, s, m)) if lower else (lambda s, m: table.final(s, m))
    bound, a = get(s, 'I_EST/test'), get(s, acc)
    if bound and a:
      c.numbers.append((f'{s}: accuracy, I_EST/test'
                        + ('' if lower else ' (not a lower bound, not compared)'),
                        f'{_num(a)}, {_num(bound, digits=3)}'))
      if lower:
        rows[s] = (bound, a)
  names = list(rows)
  decided = 0
  for i, s in enumerate(names):
    for u in names[i + 1:]:
      state, z = compare(rows[s][0], rows[u][0])
      if state == UNRESOLVED:
        continue
      decided += 1
      hi, lo = (s, u) if state == HOLDS else (u, s)
      c.order(f'{hi} tighter than {lo} (I_EST/test {_fixed(rows[hi][0]["mean"], 3)} vs '
              f'{_fixed(rows[lo][0]["mean"], 3)}, {_z(abs(z))}): accuracy({hi}) > '
              f'accuracy({lo})', rows[hi][1], rows[lo][1])
  finite = [s for s in names if all(math.isfinite(r['mean']) for r in rows[s])]
  rho = spearman([rows[s][0]['mean'] for s in finite], [rows[s][1]['mean'] for s in finite])
  states = [r['state'] for r in c.results]
  c.numbers.append(('Spearman rank correlation of mean I_EST/test with mean accuracy '
                    '(lower bounds; decides nothing)', f'{rho:.3f} over {len(finite)} settings'))
  c.numbers.append(('pairs with ordered bounds / all pairs of lower-bound settings',
                    f'{decided} / {len(names) * (len(names) - 1) // 2}'))
  c.numbers.append(('comparisons HOLDS / REVERSED / UNRESOLVED',
                    f'{states.count(HOLDS)} / {states.count(REVERSED)} / '
                    f'{states.count(UNRESOLVED)}'))
  no_pair = not c.results
  if no_pair:
    c.notes.append('no pair of lower-bound settings has final I_EST/test ordered by '
                   f'{SEPARATION:g} SE with >= {MIN_SEEDS} seeds each: nothing to compare')
  out = c.result()
  if no_pair and not c.missing:
    out['status'] = INCONCLUSIVE
  return out


# ------------------------------------------------------------------ every claim

CLAIMS = (claim1, claim2, claim3, claim4, claim5, claim6, claim4_cifar10, claim5_cifar10,
          claim_pixels_cifar10, claim_bounds, claim_metric_learning,
          claim_negatives)  # In the order of study.CLAIM_IDS.
PROBE_FREE = (claim6,)  # Claims that read no probe accuracy.


def claim_function(claim_id):
  """The check of a claim id of ``study.CLAIM_IDS``."""
  return dict(zip(study.CLAIM_IDS, CLAIMS))[claim_id]


def check_claims(table):
  """Every claim (``study.CLAIM_IDS``) under every probe protocol of PROTOCOLS.

  Returns: the paper-probe results (``status``, ``checks``, ...), each with, for every other
  protocol p ('converged': ACC_FAST; 'knn': ACC_KNN), ``status_<p>``, ``checks_<p>`` and
  ``notes_<p>`` (and for claim 2 ``colab_status_<p>``); a claim that reads no probe has the
  same verdict in all, and ``probe`` None.
  """
  out = []
  for fn in CLAIMS:
    result = fn(table, PROTOCOLS['paper'])
    for name, acc in PROTOCOLS.items():
      if name == 'paper':
        continue
      if fn in PROBE_FREE:
        result.update({f'status_{name}': result['status'], f'checks_{name}': result['checks'],
                       'probe': None})
        continue
      other = fn(table, acc)
      result.update({f'status_{name}': other['status'], f'checks_{name}': other['checks'],
                     f'notes_{name}': other['notes']})
      if 'colab_status' in other:
        result[f'colab_status_{name}'] = other['colab_status']
    out.append(result)
  return out


def protocol_key(key, protocol):
  """The key of a ``check_claims`` result under a probe protocol of PROTOCOLS: 'status' and
  'checks' for the paper's probe, 'status_<protocol>' and 'checks_<protocol>' for the others."""
  return key if protocol == 'paper' else f'{key}_{protocol}'


def undecided_settings(result):
  """The settings whose seeds could decide a claim of ``check_claims`` that is INCONCLUSIVE.

  For every probe protocol under which ``result`` is INCONCLUSIVE: the settings of its
  UNRESOLVED checks (a check that names no setting, such as a bound on a rank correlation,
  stands for every setting the claim read). A claim that is PASS, FAIL or INSUFFICIENT_DATA
  under every protocol needs no seeds: {}.

  Returns:
    {protocol: sorted setting names}, protocols in the order of PROTOCOLS.
  """
  out = {}
  for name in PROTOCOLS:
    if result.get(protocol_key('status', name)) != INCONCLUSIVE:
      continue
    settings = set()
    for check in result.get(protocol_key('checks', name), []):
      if check['state'] == UNRESOLVED:
        settings.update(check.get('settings') or result['n_seeds'])
    if settings:
      out[name] = sorted(settings)
  return out
