"""The paper's figures, drawn from a results Table: mean curves over seeds with +/- 1 SD bands.

``figure_<name>(table)`` -> a matplotlib Figure (or None without data); ``write_figures``
writes them as PNGs and ``write_tensorboard_images`` logs the PNGs as TensorBoard images.
matplotlib and TensorFlow are imported inside the functions that need them.
"""

import math
import os
import pathlib

import numpy as np

from mi_tf import study
from mi_tf.report.claims import TRUE_MI_SEC4
from mi_tf.report.results import ACC

LOG_BATCH = math.log(128)
FIGSIZE_1 = (6.4, 4.8)
FIGSIZE_2 = (12.8, 4.8)
FIGSIZE_3 = (16.0, 4.8)
DPI = 100


def _plot(ax, table, setting, metric, label, split='eval', scale=1.0, **kwargs):
  """Mean curve with a +/- 1 SD band; returns True if there was data."""
  c = table.curve(setting, metric, split)
  if not c:
    return False
  steps = np.array(sorted(c))
  mean = np.array([c[s]['mean'] for s in steps]) * scale
  sd = np.array([c[s]['sd'] for s in steps]) * scale
  ok = np.isfinite(mean)
  if not ok.any():
    return False
  ns = sorted({c[s]['n'] for s in steps[ok]})  # Seeds behind the points; a range if it varies.
  n = str(ns[0]) if len(ns) == 1 else f'{ns[0]}-{ns[-1]}'
  line, = ax.plot(steps[ok], mean[ok], label=f'{label} (n={n})', **kwargs)
  band = ok & np.isfinite(sd)
  if band.any():
    ax.fill_between(steps[band], (mean - sd)[band], (mean + sd)[band],
                    color=line.get_color(), alpha=0.2, linewidth=0)
  return True


def _hline(ax, table, setting, label, metric=ACC, scale=1.0):
  row = table.final(setting, metric)
  if row is not None and math.isfinite(row['mean']):
    ax.axhline(row['mean'] * scale, color='k', linestyle='--', linewidth=1,
               label=f'{label} (n={row["n"]})')


def _new(panels=1):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  size = {1: FIGSIZE_1, 2: FIGSIZE_2, 3: FIGSIZE_3}[panels]
  fig, axes = plt.subplots(1, panels, figsize=size, dpi=DPI, squeeze=False)
  return fig, list(axes[0])


def _finish(fig, axes, any_data, title):
  if not any_data:
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    plt.close(fig)
    return None
  for ax in axes:
    ax.set_xlabel('iteration')
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def _acc_panel(ax, table, curves, baseline=None, baseline_label='pixels'):
  """Probe accuracy curves and the baseline's (default: the pixel probe) as a line."""
  got = False
  for setting, label in curves:
    got |= _plot(ax, table, setting, ACC, label, scale=100)
  if got:
    _hline(ax, table, study.PIXELS if baseline is None else baseline, baseline_label,
           scale=100)
  ax.set_ylabel('test accuracy (%)')
  return got


def figure_1a(table):
  fig, (ax,) = _new()
  got = _acc_panel(ax, table, [(study.realnvp_setting('infonce'), 'RealNVP, I_NCE'),
                               (study.realnvp_setting('nwj'), 'RealNVP, I_NWJ')])
  return _finish(fig, [ax], got, 'Fig. 1a: probe accuracy of invertible RealNVP encoders')


def figure_1b(table):
  fig, (ax,) = _new()
  got = _plot(ax, table, study.realnvp_setting('infonce'), 'I_EST/test',
              'I_NCE (test), trained with I_NCE')
  got |= _plot(ax, table, study.realnvp_setting('nwj'), 'I_EST/test',
               'I_NWJ (test), trained with I_NWJ')
  ax.axhline(LOG_BATCH, color='gray', linestyle=':', linewidth=1, label='log 128')
  ax.set_ylabel('I_EST (nats)')
  return _finish(fig, [ax], got, 'Fig. 1b: I_EST of RealNVP encoders (true MI constant)')


def figure_1c(table):
  fig, (ax,) = _new()
  got = _acc_panel(ax, table, [(study.ADVERSARIAL, 'adversarial, paper lr'),
                               (study.ADVERSARIAL_COLAB_LR, 'adversarial, Colab lr')])
  return _finish(fig, [ax], got, 'Fig. 1c: probe accuracy of the adversarially trained '
                 'invertible encoder')


def _resmlp_figure(table, setting, estimator, title):
  fig, axes = _new(3)
  got = _acc_panel(axes[0], table, [(setting, f'residual MLP, {estimator}')],
                   study.PIXELS_NOISY, 'noisy pixels')
  got |= _plot(axes[1], table, setting, 'I_EST/test', f'{estimator} (test)')
  got |= _plot(axes[1], table, setting, 'I_EST/train', f'{estimator} (train)')
  axes[1].set_ylabel('I_EST (nats)')
  for p in (0, 20, 40, 60, 80, 100):
    got |= _plot(axes[2], table, setting, f'jacobian/log_cond_p{p}', f'p{p}')
  axes[2].set_ylabel('log condition number of J_g1')
  return _finish(fig, axes, got, title)


def figure_2(table):
  return _resmlp_figure(table, study.resmlp_setting('infonce'), 'I_NCE',
                        'Fig. 2: residual MLP trained with I_NCE (accuracy, I_EST, '
                        'log cond percentiles)')


def figure_5(table):
  return _resmlp_figure(table, study.resmlp_setting('nwj'), 'I_NWJ',
                        'Fig. 5: residual MLP trained with I_NWJ')


def _critics_figure(table, est, metric, ylabel, title):
  fig, axes = _new(2)
  names = [(study.critic_setting(k, est), k) for k in ('bilinear', 'separable', 'concat')]
  got = _acc_panel(axes[0], table, [(s, label) for s, label in names])
  for s, label in names:
    got |= _plot(axes[1], table, s, metric, label)
  axes[1].set_ylabel(ylabel)
  return _finish(fig, axes, got, title)


def figure_3(table):
  return _critics_figure(table, 'nwj', 'I_NWJ/test', 'I_NWJ (test, nats)',
                         'Fig. 3: critics trained with I_NWJ (concat = MLP critic)')


def figure_6(table):
  return _critics_figure(table, 'infonce', 'I_NCE/test', 'I_NCE (test, nats)',
                         'Fig. 6: critics trained with I_NCE (concat = MLP critic)')


def _encoders_acc(table, t):
  fig, (ax,) = _new()
  curves = [(study.encoder_setting(enc, est, t), f'{name}, {est_name}')
            for enc, name in (('mlp', 'MLP'), ('convnet', 'ConvNet'))
            for est, est_name in (('infonce', 'I_NCE'), ('nwj', 'I_NWJ'))]
  got = _acc_panel(ax, table, curves)
  return _finish(fig, [ax], got, f'Fig. 4{"a" if t == 2 else "b"}: encoders at '
                 f'min |I_EST - {t}|')


def figure_4a(table):
  return _encoders_acc(table, 2)


def figure_4b(table):
  return _encoders_acc(table, 4)


def figure_4c(table):
  fig, (ax,) = _new()
  got = False
  for sampling, est, label in (('noniid', 'infonce', 'I_NCE, non-i.i.d.'),
                               ('noniid', 'nwj', 'I_NWJ, non-i.i.d.'),
                               ('iid', 'infonce', 'I_NCE, i.i.d.'),
                               ('iid', 'nwj', 'I_NWJ, i.i.d.')):
    got |= _plot(ax, table, study.sec4_setting(sampling, est), 'I_EST/eval', label)
  ax.axhline(TRUE_MI_SEC4, color='k', linestyle='--', linewidth=1, label='true MI')
  ax.set_ylabel('estimate (nats)')
  return _finish(fig, [ax], got, 'Fig. 4c: estimators with i.i.d. and non-i.i.d. negatives')


def figure_7(table):
  fig, axes = _new(2)
  got = False
  for ax, t in zip(axes, (2, 4)):
    for enc, name in (('mlp', 'MLP'), ('convnet', 'ConvNet')):
      for est, est_name in (('infonce', 'I_NCE'), ('nwj', 'I_NWJ')):
        got |= _plot(ax, table, study.encoder_setting(enc, est, t), 'I_EST/train',
                     f'{name}, {est_name}')
    ax.axhline(t, color='k', linestyle='--', linewidth=1, label=f't = {t}')
    ax.set_ylabel('I_EST (train, nats)')
  return _finish(fig, axes, got, 'Fig. 7: I_EST of the Sec. 3.3 encoders at the targets')


FIGURES = {
    'fig1a': figure_1a, 'fig1b': figure_1b, 'fig1c': figure_1c, 'fig2': figure_2,
    'fig3': figure_3, 'fig4a': figure_4a, 'fig4b': figure_4b, 'fig4c': figure_4c,
    'fig5': figure_5, 'fig6': figure_6, 'fig7': figure_7,
}


def write_figures(table, figures_dir):
  """Writes every figure with data as <figures_dir>/<name>.png; returns {name: path|None}."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(figures_dir, exist_ok=True)
  out = {}
  for name, fn in FIGURES.items():
    fig = fn(table)
    path = os.path.join(figures_dir, f'{name}.png')
    if fig is None:
      out[name] = None
      if os.path.exists(path):  # A stale figure of runs that are gone.
        os.remove(path)
      continue
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    out[name] = path
  return out


def write_tensorboard_images(paths, logdir):
  """Logs the PNGs as TensorBoard images (tag = figure name, step 0), replacing the event
  files of an earlier report in ``logdir`` (the figures are redrawn from all runs each time)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for old in pathlib.Path(logdir).glob('events.out.tfevents.*'):
    old.unlink()
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default(step=0):
    for name, path in sorted(paths.items()):
      if path:
        image = tf.image.decode_png(tf.io.read_file(path), channels=4)
        tf.summary.image(name, image[None], step=0)
  writer.flush()
  writer.close()


