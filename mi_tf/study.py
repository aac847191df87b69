"""The paper's study as data: every setting, the suites, and the settings each claim and figure
reads, in one place.

A setting is the stem of an experiment gin file of gin/ (trained by train.py) or a probe-only
baseline (eval_probe.py on raw pixels). The names are built as products of the paper's
vocabulary:

  Sec. 3.1  invertible encoders: RealNVP and the residual MLP, x estimators; the adversarially
            trained RealNVP (at the paper's and at the Colab's learning rates).
  Sec. 3.2  critics (bilinear, separable, concat = the MLP critic) x estimators (infonce, nwj).
  Sec. 3.3  encoders (mlp, convnet) x estimators x targets t in {2, 4} of |I_EST - t|.
  Sec. 4    negative samplings (noniid, iid) x estimators, on the Gaussian toy task.
  Baselines the linear probe on X1 pixels (clean, with the 0.05 noise of Sec. 3.1, CIFAR-10)
            and the supervised encoders; App. G repeats Sec. 3.2 and 3.3 on CIFAR-10.

The report never spells a setting name: claims and figures ask the accessors below
(``critic_setting('bilinear', 'nwj')``, ``PIXELS``, ...) when they run, so renaming or adding a
setting is one edit here (and its gin file). The name tables are plain dicts keyed by the
vocabulary, looked up at call time.

No TensorFlow and no numpy: the runner and the report import this without them.
"""

import dataclasses
import pathlib

from mi_tf import gin_files

# The folder above the package: the repository root in a checkout (in an installed package,
# site-packages; nothing needs it to be a checkout: gin files are found by gin_files).
REPO_DIR = pathlib.Path(__file__).resolve().parents[1]
PROBE_RESULT = 'probe_result.json'   # What a finished probe run leaves in its directory.
FINAL_METRICS = 'final_metrics.json'  # What a finished training run leaves.

# ------------------------------------------------------------------ vocabulary

ESTIMATORS = ('infonce', 'nwj')
# Beyond the paper: the bounds Poole et al. (2019) and Song and Ermon (2020) compare, on the
# Sec. 3.2 critics and at t = 4 of Sec. 3.3 (mi_tf.estimators has their definitions). The
# 'tuba' settings learn TUBA's baseline (MIMaximization.learned_baseline).
FAMILY_ESTIMATORS = ('dv', 'js', 'tuba', 'smile', 'alpha')
BOUND_ESTIMATORS = ESTIMATORS + FAMILY_ESTIMATORS
NOT_LOWER_BOUNDS = ('smile',)  # SMILE's clipped partition term can exceed the MI.
# Estimators whose critic is trained with another objective than the estimate (the
# Jensen-Shannon one: Poole et al.'s I_JS, Song and Ermon's SMILE): their training step has the
# estimate's value and that objective's gradient (mi_tf.estimators, ``objective_per_row``).
TRAINED_WITH_ANOTHER_OBJECTIVE = ('js', 'smile')
FAMILY_TARGETS = (4,)
# Beyond the paper: the metric-learning view of Sec. 4 and App. C.
METRIC_OBJECTIVES = ('kpair_shared', 'kpair_separate', 'triplet')
NEGATIVES_BATCH_SIZES = (16, 32, 64, 128, 256, 512)  # K, the negatives + 1 of I_NCE.
MINING = ('random', 'hard')  # Which K - 1 = 127 of a 512 batch's 511 negatives a row keeps.
CRITICS = ('bilinear', 'separable', 'concat')  # concat: the MLP critic.
ENCODERS = ('mlp', 'convnet')
TARGETS = (2, 4)
SAMPLINGS = ('noniid', 'iid')
CIFAR10_PREFIX = 'cifar10_'  # App. G: the Sec. 3.2 and 3.3 settings on CIFAR-10.

# The Sec. 3.1 and Sec. 4 names leave the paper's default estimator (I_NCE) unsaid.
_ESTIMATOR_SUFFIX = {'infonce': '', 'nwj': '_nwj'}

# ------------------------------------------------------------------ the settings

# Probe-only baselines (the paper's "reference figures"): the linear probe on raw X1.
PIXELS = 'baseline_pixels'                  # about 85%
PIXELS_NOISY = 'baseline_pixels_noisy'      # about 84% (Sec. 3.1)
PIXELS_CIFAR10 = 'baseline_pixels_cifar10'  # about 24% (App. G)
PROBE_BASELINES = {
    # --also_fast: the converged probe too, the second protocol of the claim checks;
    # --also_knn: the k-NN probe, the third (probe_knn_result.json beside probe_result.json).
    PIXELS: ('--pixels', '--also_fast', '--also_knn'),
    PIXELS_NOISY: ('--pixels', '--noise_std=0.05', '--also_fast', '--also_knn'),
    PIXELS_CIFAR10: ('--pixels', '--dataset=cifar10', '--also_fast', '--also_knn'),
}
BASELINE_PREFIX = 'baseline_'
SUPERVISED_SETTINGS = {enc: f'{BASELINE_PREFIX}supervised_{enc}' for enc in ENCODERS}

# Sec. 3.1.
REALNVP_SETTINGS = {est: f'sec3_1_realnvp{_ESTIMATOR_SUFFIX[est]}' for est in ESTIMATORS}
RESMLP_SETTINGS = {est: f'sec3_1_resmlp{_ESTIMATOR_SUFFIX[est]}' for est in ESTIMATORS}
ADVERSARIAL = 'sec3_1_adversarial'                   # The paper's learning rates (claim 2).
ADVERSARIAL_COLAB_LR = 'sec3_1_adversarial_colab_lr'  # The Colab's 10x larger rates.

# Sec. 3.2 and 3.3.
CRITICS_STUDY = 'sec3_2_critics'
ENCODERS_STUDY = 'sec3_3_encoders'
CRITIC_SETTINGS = {(critic, est): f'{CRITICS_STUDY}_{critic}_{est}'
                   for critic in CRITICS for est in BOUND_ESTIMATORS}
ENCODER_SETTINGS = {
    **{(enc, est, t): f'{ENCODERS_STUDY}_{enc}_{est}_t{t}'
       for enc in ENCODERS for est in ESTIMATORS for t in TARGETS},
    **{(enc, est, t): f'{ENCODERS_STUDY}_{enc}_{est}_t{t}'
       for enc in ENCODERS for est in FAMILY_ESTIMATORS for t in FAMILY_TARGETS}}

# Beyond the paper: metric-learning objectives (K-pair with a shared or separate encoders,
# triplet) beside the MI-trained references of the same encoder; the number of negatives.
METRIC_PREFIX = 'metric_'
NEGATIVES_PREFIX = 'negatives_'
METRIC_SETTINGS = {
    **{(obj, enc): f'{METRIC_PREFIX}{obj}_{enc}' for obj in METRIC_OBJECTIVES for enc in ENCODERS},
    # The I_NCE / I_NWJ references: the MLP ones are the Sec. 3.2 bilinear runs.
    **{(est, 'mlp'): CRITIC_SETTINGS[('bilinear', est)] for est in ESTIMATORS},
    **{(est, 'convnet'): f'{METRIC_PREFIX}{est}_convnet' for est in ESTIMATORS}}
NEGATIVES_SETTINGS = {b: (CRITIC_SETTINGS[('bilinear', 'infonce')] if b == 128
                          else f'{NEGATIVES_PREFIX}b{b}') for b in NEGATIVES_BATCH_SIZES}
MINING_SETTINGS = {m: f'{NEGATIVES_PREFIX}{m}_k128' for m in MINING}

# Sec. 4.
SEC4_PREFIX = 'sec4_'
SEC4_SETTINGS = {(sampling, est): f'{SEC4_PREFIX}{sampling}{_ESTIMATOR_SUFFIX[est]}'
                 for sampling in SAMPLINGS for est in ESTIMATORS}


def realnvp_setting(estimator):
  return REALNVP_SETTINGS[estimator]


def resmlp_setting(estimator):
  return RESMLP_SETTINGS[estimator]


def supervised_setting(encoder):
  return SUPERVISED_SETTINGS[encoder]


def critic_setting(critic, estimator, dataset='mnist'):
  """The Sec. 3.2 setting of a critic trained with an estimator (App. G: on CIFAR-10)."""
  return _on(dataset, CRITIC_SETTINGS[(critic, estimator)])


def encoder_setting(encoder, estimator, target, dataset='mnist'):
  """The Sec. 3.3 setting of an encoder at target t of |I_EST - t| (App. G: on CIFAR-10)."""
  return _on(dataset, ENCODER_SETTINGS[(encoder, estimator, target)])


def metric_setting(objective, encoder):
  """A metric-learning setting (objective of METRIC_OBJECTIVES) or the MI-trained reference
  of the same encoder (objective 'infonce' or 'nwj': bilinear critic, max I_EST)."""
  return METRIC_SETTINGS[(objective, encoder)]


def negatives_setting(batch_size):
  """I_NCE with the bilinear critic and MLP encoders at a batch size of
  NEGATIVES_BATCH_SIZES (K = batch size; 128 is the Sec. 3.2 run)."""
  return NEGATIVES_SETTINGS[batch_size]


def mining_setting(mining):
  """I_NCE over K = 128 columns of a 512 batch: 127 'random' or 'hard' negatives a row."""
  return MINING_SETTINGS[mining]


def sec4_setting(sampling, estimator):
  """The Sec. 4 setting of a negative sampling ('noniid' or 'iid') and an estimator."""
  return SEC4_SETTINGS[(sampling, estimator)]


def _on(dataset, name):
  if dataset == 'mnist':
    return name
  if dataset == 'cifar10':
    return CIFAR10_PREFIX + name
  raise ValueError(f'Unknown dataset {dataset!r}.')


def is_baseline(name):
  """A probe baseline or a supervised baseline (the report's table of baselines)."""
  return name.startswith(BASELINE_PREFIX)


def is_sec4(name):
  """A Sec. 4 setting (the report's table of the Gaussian toy task)."""
  return name.startswith(SEC4_PREFIX)


# ------------------------------------------------------------------ suites

def _study():
  """The suites, each in the order the runner runs it (cheapest settings first)."""
  sec4 = tuple(sec4_setting(s, e) for s in SAMPLINGS for e in ESTIMATORS)
  critics = tuple(critic_setting(c, e) for c in CRITICS for e in ESTIMATORS)
  encoders = {enc: tuple(encoder_setting(enc, e, t) for e in ESTIMATORS for t in TARGETS)
              for enc in ENCODERS}
  resmlp = tuple(resmlp_setting(e) for e in ESTIMATORS)
  adversarial = (ADVERSARIAL, ADVERSARIAL_COLAB_LR)
  realnvp = tuple(realnvp_setting(e) for e in ESTIMATORS)
  mnist = ((PIXELS, PIXELS_NOISY) + sec4 + critics + (supervised_setting('mlp'),)
           + encoders['mlp'] + encoders['convnet'] + (supervised_setting('convnet'),)
           + resmlp + adversarial + realnvp)
  cifar10 = ((PIXELS_CIFAR10,) + tuple(critic_setting(c, e, 'cifar10') for c in CRITICS
                                       for e in ESTIMATORS)
             + tuple(encoder_setting(a, e, t, 'cifar10') for a in ENCODERS for e in ESTIMATORS
                     for t in TARGETS))
  bounds = (tuple(critic_setting(c, e) for e in FAMILY_ESTIMATORS for c in CRITICS)
            + tuple(encoder_setting(a, e, t) for a in ENCODERS for e in FAMILY_ESTIMATORS
                    for t in FAMILY_TARGETS))
  negatives = (tuple(negatives_setting(b) for b in NEGATIVES_BATCH_SIZES if b != 128)
               + tuple(mining_setting(m) for m in MINING))
  metric = (tuple(metric_setting(o, 'mlp') for o in METRIC_OBJECTIVES)
            + tuple(metric_setting(o, 'convnet') for o in ESTIMATORS + METRIC_OBJECTIVES))
  return {
      'mnist': mnist,
      # Beyond the paper (the paper's own settings they compare with are in 'mnist').
      'bounds': bounds,
      'metric': negatives + metric,
      'baselines': tuple(s for s in mnist if is_baseline(s)),
      'sec3_1': resmlp + adversarial + realnvp,
      'sec3_2': critics,
      'sec3_3': encoders['mlp'] + encoders['convnet'],
      'sec4': sec4,
      'cifar10': cifar10,
  }


SUITES = _study()
MNIST_SETTINGS = SUITES['mnist']
CIFAR10_SETTINGS = SUITES['cifar10']

# At most this many seeds unless --setting_seeds says otherwise: the two RealNVP settings
# (1.4-2 h each on 2 CPU cores) get the fewest seeds a verdict needs (a claim is PASS or FAIL
# only with at least 3 seeds on each side of every comparison); every other setting gets
# --seeds.
# App. G's ConvNet settings on CIFAR-10 (about 3.2 h a run on 2 CPU cores: 60,000 steps at
# 5.5 steps/s) get 1 seed, as App. G's plan of at least 1; their claims then read
# INCONCLUSIVE (no comparison on one seed holds) until --setting_seeds gives them 3.
DEFAULT_SETTING_SEEDS = {realnvp_setting('infonce'): 3, realnvp_setting('nwj'): 3,
                         **{encoder_setting('convnet', e, t, 'cifar10'): 1
                            for e in ESTIMATORS for t in TARGETS}}
# Beyond the paper: the MNIST ConvNet settings (about 40 min a run on 2 CPU cores; about 1 h,
# estimated from the step's FLOPs, on a VM with a third of the matmul peak) get 1 seed, the
# least their plan asks.
DEFAULT_SETTING_SEEDS.update({encoder_setting('convnet', e, t): 1 for e in FAMILY_ESTIMATORS
                              for t in FAMILY_TARGETS})
DEFAULT_SETTING_SEEDS.update({metric_setting(o, 'convnet'): 1
                              for o in ESTIMATORS + METRIC_OBJECTIVES})


def _phases():
  """The whole study as the runner runs it (``reproduce run --phases``): (name, settings,
  seeds) in order; each phase's seeds are its --seeds (DEFAULT_SETTING_SEEDS still cap them).
  App. G first, then beyond the paper (with the paper's Sec. 3.2 settings it compares with),
  then every MNIST setting of the paper at 5 seeds; within a suite the MLP-class settings (one
  core a run, two at once on 2 cores) before the ConvNet ones (both cores a run)."""
  def split(names):
    return (tuple(n for n in names if 'convnet' not in n),
            tuple(n for n in names if 'convnet' in n))
  cifar_mlp, cifar_convnet = split(SUITES['cifar10'])
  beyond_mlp, beyond_convnet = split(SUITES['sec3_2'] + SUITES['bounds'] + SUITES['metric'])
  return (('App. G on CIFAR-10, MLP-class settings', cifar_mlp, 3),
          ('App. G on CIFAR-10, ConvNet settings', cifar_convnet, 1),
          ('beyond the paper, MLP-class settings', beyond_mlp, 3),
          ('beyond the paper, ConvNet settings', beyond_convnet, 1),
          ('the paper on MNIST, every setting', SUITES['mnist'], 5))


STUDY_PHASES = _phases()


# ------------------------------------------------------------------ what the report reads

# The claims of the report: the paper's six on MNIST (ids 1-6), claims 4 and 5 again on the
# CIFAR-10 runs of App. G, and App. G's "representations beat the pixels" (the axes of the
# paper's Figs. 8 and 9: pixels about 24%, representations 26-36%).
CIFAR10_CLAIM_4 = '4 (CIFAR-10)'
CIFAR10_CLAIM_5 = '5 (CIFAR-10)'
CIFAR10_CLAIM_PIXELS = 'G (CIFAR-10)'
# Beyond the paper: does a tighter bound give a better representation; does the metric-learning
# view predict the runs (metric-learning objectives as good as I_NCE; more and harder negatives
# better).
BOUNDS_CLAIM = 'B (bounds)'
METRIC_CLAIM = 'K (metric learning)'
NEGATIVES_CLAIM = 'N (negatives)'
CLAIM_IDS = (1, 2, 3, 4, 5, 6, CIFAR10_CLAIM_4, CIFAR10_CLAIM_5, CIFAR10_CLAIM_PIXELS,
             BOUNDS_CLAIM, METRIC_CLAIM, NEGATIVES_CLAIM)


def critic_settings(dataset='mnist'):
  """The Sec. 3.2 settings of a dataset, estimator by estimator, critic by critic."""
  return tuple(critic_setting(c, e, dataset) for e in ESTIMATORS for c in CRITICS)


def encoder_settings(dataset='mnist', targets=TARGETS):
  """The Sec. 3.3 settings of a dataset at the given targets t."""
  return tuple(encoder_setting(a, e, t, dataset) for e in ESTIMATORS for t in targets
               for a in ENCODERS)


def bound_critic_settings():
  """The Sec. 3.2 settings of every estimator of BOUND_ESTIMATORS (estimator-major)."""
  return tuple(critic_setting(c, e) for e in BOUND_ESTIMATORS for c in CRITICS)


def bound_encoder_settings(targets=FAMILY_TARGETS):
  """The Sec. 3.3 settings of every estimator of BOUND_ESTIMATORS at t = 4."""
  return tuple(encoder_setting(a, e, t) for e in BOUND_ESTIMATORS for t in targets
               for a in ENCODERS)


def metric_settings():
  """The metric-learning settings and their I_NCE / I_NWJ references, encoder by encoder."""
  return tuple(metric_setting(o, a) for a in ENCODERS for o in ESTIMATORS + METRIC_OBJECTIVES)


def negatives_settings():
  """The batch-size settings (K = 16 ... 512) and the two K = 128 minings."""
  return (tuple(negatives_setting(b) for b in NEGATIVES_BATCH_SIZES)
          + tuple(mining_setting(m) for m in MINING))


def claim_settings():
  """{claim id: the settings the claim reads}, looked up now (the claims of CLAIM_IDS)."""
  return {
      1: (PIXELS,) + tuple(realnvp_setting(e) for e in ESTIMATORS),
      2: (PIXELS, ADVERSARIAL, ADVERSARIAL_COLAB_LR),
      3: (PIXELS_NOISY,) + tuple(resmlp_setting(e) for e in ESTIMATORS),
      4: critic_settings(),
      5: encoder_settings(),
      6: tuple(sec4_setting(s, e) for e in ESTIMATORS for s in SAMPLINGS),
      CIFAR10_CLAIM_4: critic_settings('cifar10'),
      CIFAR10_CLAIM_5: encoder_settings('cifar10'),
      CIFAR10_CLAIM_PIXELS: ((PIXELS_CIFAR10,) + critic_settings('cifar10')
                             + encoder_settings('cifar10')),
      BOUNDS_CLAIM: bound_critic_settings(),
      METRIC_CLAIM: metric_settings(),
      NEGATIVES_CLAIM: negatives_settings(),
  }


def figure_settings():
  """{figure name: the settings the figure reads}, looked up now (the report's figures)."""
  realnvp = tuple(realnvp_setting(e) for e in ESTIMATORS)

  def encoders(targets):
    return tuple(encoder_setting(a, e, t) for t in targets for a in ENCODERS
                 for e in ESTIMATORS)

  return {
      'fig1a': realnvp + (PIXELS,),
      'fig1b': realnvp,
      'fig1c': (ADVERSARIAL, ADVERSARIAL_COLAB_LR, PIXELS),
      'fig2': (resmlp_setting('infonce'), PIXELS_NOISY),
      'fig3': tuple(critic_setting(c, 'nwj') for c in CRITICS) + (PIXELS,),
      'fig4a': encoders((2,)) + (PIXELS,),
      'fig4b': encoders((4,)) + (PIXELS,),
      'fig4c': tuple(sec4_setting(s, e) for s in SAMPLINGS for e in ESTIMATORS),
      'fig5': (resmlp_setting('nwj'), PIXELS_NOISY),
      'fig6': tuple(critic_setting(c, 'infonce') for c in CRITICS) + (PIXELS,),
      'fig7': encoders(TARGETS),
      'fig8': critic_settings('cifar10') + (PIXELS_CIFAR10,),
      'fig9': encoder_settings('cifar10') + (PIXELS_CIFAR10,),
      # Beyond the paper.
      'bounds': bound_critic_settings() + bound_encoder_settings(),
      'metric': metric_settings(),
      'negatives': negatives_settings(),
  }


# ------------------------------------------------------------------ what a run needs

@dataclasses.dataclass(frozen=True)
class Resources:
  """What one run of a setting needs; the executors schedule by it.

  cpus: CPU cores the run keeps busy (its TensorFlow and BLAS threads are set to this,
    capped at the machine's cores; a run that asks for more cores than a machine has gets
    the whole machine, alone).
  gpu: the fraction of one GPU (runs share a GPU with memory growth on); ignored without GPUs.
  memory_gb: resident memory of the run (the probe's splits, the model, TensorFlow).
  """
  cpus: int
  gpu: float
  memory_gb: float


# By the cost of a training step at batch 128 on 2 CPU cores (BENCHMARKS.md): the MLP
# settings, Sec. 4 and the probes 3-8 ms (and their evaluations mostly single-threaded
# scikit-learn), so one core each; the ConvNet (47 ms, 88% of the float32 peak on 2 cores)
# and the residual MLP (13 ms) scale to more cores; the RealNVP (215 ms, 28M parameters)
# and the adversarial RealNVP (430 ms) take a whole small machine or a GPU each.
RESOURCES = {
    'small': Resources(cpus=1, gpu=0.25, memory_gb=2.0),
    'medium': Resources(cpus=2, gpu=0.5, memory_gb=3.0),
    'large': Resources(cpus=4, gpu=1.0, memory_gb=6.0),
}


def resource_class(name):
  """'small', 'medium' or 'large': the resource class of a setting, from its vocabulary."""
  if 'realnvp' in name or 'adversarial' in name:
    return 'large'
  if 'convnet' in name or 'resmlp' in name:
    return 'medium'
  return 'small'


# ------------------------------------------------------------------ settings to run

@dataclasses.dataclass(frozen=True)
class Setting:
  """One experiment setting: a gin file to train (kind 'train') or a pixel probe ('probe').

  name: the directory under runs_dir (the gin file stem for gin/ files).
  gin_files: for 'train', gin files (relative to the repository root, or absolute).
  bindings: extra gin bindings of this setting (added after the runner's own).
  probe_args: for 'probe', arguments of eval_probe.py (e.g. ('--pixels', '--noise_std=0.05')).
  """
  name: str
  kind: str = 'train'
  gin_files: tuple = ()
  bindings: tuple = ()
  probe_args: tuple = ()

  @property
  def result_file(self):
    return PROBE_RESULT if self.kind == 'probe' else FINAL_METRICS

  @property
  def resources(self):
    return RESOURCES[resource_class(self.name)]


def make_setting(name, gin_dir='gin'):
  """The Setting of a gin file stem (gin/<name>.gin) or of a probe baseline name."""
  if name in PROBE_BASELINES:
    return Setting(name, kind='probe', probe_args=PROBE_BASELINES[name])
  return Setting(name, gin_files=(f'{gin_dir}/{name}.gin',))


def suite_settings(suites=(), names=()):
  """Settings of the named suites (comma lists allowed) and of explicit names, in order."""
  out = []
  for suite in [s for item in suites for s in item.split(',') if s]:
    if suite not in SUITES:
      raise ValueError(f'Unknown suite {suite!r}; choose from {sorted(SUITES)}.')
    out += SUITES[suite]
  out += [n for item in names for n in item.split(',') if n]
  gin_dir = gin_files.gin_dir()
  unknown = [n for n in out if n not in PROBE_BASELINES and not (gin_dir / f'{n}.gin').is_file()]
  if unknown:
    raise ValueError(f'Unknown setting(s) {unknown}: not a gin/<name>.gin file nor one of '
                     f'{sorted(PROBE_BASELINES)}.')
  seen = set()
  return [make_setting(n) for n in out if not (n in seen or seen.add(n))]
