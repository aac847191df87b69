"""The paper's figures, drawn from a results Table: mean curves over seeds with +/- 1 SD bands.

``figure_<name>(table)`` -> a matplotlib Figure (or None without data); ``write_figures``
writes them as PNGs (titles flag settings run with non-default arguments) and
``write_tensorboard_images`` logs the PNGs as TensorBoard images. The x axes are in
thousands of training steps, as the paper draws them. Fig. 7 is the testing loss
|I_EST/test - t| of the mean curve; Fig. 1c and 4c have two panels each (the paper's and the
authors' code's learning rates; the estimates and their difference to the true MI).
matplotlib and TensorFlow are imported inside the functions that need them.
"""

import io
import math
import os
import pathlib
import textwrap

import numpy as np

from mi_tf import files
from mi_tf import study
from mi_tf.report.claims import TRUE_MI_SEC4
from mi_tf.report.results import ACC

LOG_BATCH = math.log(128)
FIGSIZE_1 = (6.4, 4.8)
FIGSIZE_2 = (12.8, 4.8)
FIGSIZE_3 = (16.0, 4.8)
FIGSIZE_4 = (21.0, 4.8)
DPI = 100
STEP_UNIT = 1000  # The x axes are in thousands of training steps, as the paper draws them.
XLABEL = 'iteration (thousands)'


def _curve(table, setting, metric, split='eval'):
  """(steps, mean, sd, n) arrays of a curve over its steps, or None if absent."""
  c = table.curve(setting, metric, split)
  if not c:
    return None
  steps = np.array(sorted(c))
  return (steps, np.array([c[s]['mean'] for s in steps], np.float64),
          np.array([c[s]['sd'] for s in steps], np.float64),
          np.array([c[s]['n'] for s in steps]))


def _draw(ax, steps, mean, label, ns, band=None, **kwargs):
  """A line over steps (in thousands) with an optional (low, high) band; True if drawn."""
  ok = np.isfinite(mean)
  if not ok.any():
    return False
  seeds = sorted({int(n) for n in ns[ok]})  # Seeds behind the points; a range if it varies.
  n = str(seeds[0]) if len(seeds) == 1 else f'{seeds[0]}-{seeds[-1]}'
  x = steps / STEP_UNIT
  line, = ax.plot(x[ok], mean[ok], label=f'{label} (n={n})', **kwargs)
  if band is not None:
    low, high = band
    inside = ok & np.isfinite(low) & np.isfinite(high)
    if inside.any():
      ax.fill_between(x[inside], low[inside], high[inside], color=line.get_color(),
                      alpha=0.2, linewidth=0)
  return True


def _plot(ax, table, setting, metric, label, split='eval', scale=1.0, **kwargs):
  """Mean curve with a +/- 1 SD band; returns True if there was data."""
  c = _curve(table, setting, metric, split)
  if c is None:
    return False
  steps, mean, sd, ns = c
  mean, sd = mean * scale, sd * scale
  return _draw(ax, steps, mean, label, ns, (mean - sd, mean + sd), **kwargs)


def _hline(ax, table, setting, label, metric=ACC, scale=1.0):
  row = table.final(setting, metric)
  if row is not None and math.isfinite(row['mean']):
    ax.axhline(row['mean'] * scale, color='k', linestyle='--', linewidth=1,
               label=f'{label} (n={row["n"]})')
    return row['mean'] * scale
  return None


def _new(panels=1):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  size = {1: FIGSIZE_1, 2: FIGSIZE_2, 3: FIGSIZE_3, 4: FIGSIZE_4}[panels]
  fig, axes = plt.subplots(1, panels, figsize=size, dpi=DPI, squeeze=False)
  return fig, list(axes[0])


def _finish(fig, axes, any_data, title):
  if not any_data:
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    plt.close(fig)
    return None
  for ax in axes:
    ax.set_xlabel(XLABEL)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def flag_title(fig, settings_arguments):
  """Adds to a figure's title which of its settings were run with other arguments than the
  study's (e.g. a short smoke run's train.num_steps=300), grouped by those arguments.

  Args:
    fig: a Figure of this module (its suptitle is extended).
    settings_arguments: {setting: [arguments]} of the figure's flagged settings.
  """
  if not settings_arguments:
    return fig
  groups = {}
  for setting, args in sorted(settings_arguments.items()):
    groups.setdefault(tuple(args), []).append(setting)
  parts = [f'{", ".join(a.replace("--gin_bindings=", "") for a in args)} '
           f'({", ".join(names)})' for args, names in groups.items()]
  width = int(fig.get_size_inches()[0] * 15)  # Characters of 8-point text across the figure.
  text = textwrap.fill('NON-DEFAULT ARGUMENTS: ' + '; '.join(parts), width)
  fig.suptitle(f'{fig.get_suptitle()}\n{text}', fontsize=9, color='firebrick')
  fig.tight_layout()
  return fig


def _acc_panel(ax, table, curves, baseline=None, baseline_label='pixels', colors=None):
  """Probe accuracy curves and the baseline's (default: the pixel probe) as a line;
  ``colors``: {setting: matplotlib color} (default: the cycle)."""
  got = False
  for setting, label in curves:
    kwargs = {'color': colors[setting]} if colors else {}
    got |= _plot(ax, table, setting, ACC, label, scale=100, **kwargs)
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
  """Two panels, each on the y scale of its own curve and the pixel line: the paper's
  learning rates (deciding claim 2), and the learning rates of the authors' code."""
  fig, axes = _new(2)
  got = False
  for ax, setting, label, title in (
      (axes[0], study.ADVERSARIAL, 'adversarial, paper lr', "paper's learning rates"),
      (axes[1], study.ADVERSARIAL_COLAB_LR, 'adversarial, Colab lr',
       "authors' code (Colab) learning rates")):
    got |= _acc_panel(ax, table, [(setting, label)])
    ax.set_title(title, fontsize=9)
    ax.relim()
    ax.autoscale_view()
  return _finish(fig, axes, got, 'Fig. 1c: probe accuracy of the adversarially trained '
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
  """Left: the estimates and the true MI. Right: estimate minus true MI with +/- 2 SE bands
  (SE = SD over seeds / sqrt(n), the SE claim 6 decides with), so that the position of the
  i.i.d. curves relative to the true MI is visible."""
  fig, axes = _new(2)
  got = False
  for sampling, est, label in (('noniid', 'infonce', 'I_NCE, non-i.i.d.'),
                               ('noniid', 'nwj', 'I_NWJ, non-i.i.d.'),
                               ('iid', 'infonce', 'I_NCE, i.i.d.'),
                               ('iid', 'nwj', 'I_NWJ, i.i.d.')):
    setting = study.sec4_setting(sampling, est)
    got |= _plot(axes[0], table, setting, 'I_EST/eval', label)
    c = _curve(table, setting, 'I_EST/eval')
    if c is None:
      continue
    steps, mean, sd, ns = c
    true = table.curve(setting, 'true_mi')
    mi = np.array([true[s]['mean'] if s in true else TRUE_MI_SEC4 for s in steps])
    se = np.where(ns > 1, sd / np.sqrt(np.maximum(ns, 1)), np.nan)
    diff = mean - mi
    _draw(axes[1], steps, diff, label, ns, (diff - 2 * se, diff + 2 * se))
  axes[0].axhline(TRUE_MI_SEC4, color='k', linestyle='--', linewidth=1, label='true MI')
  axes[0].set_ylabel('estimate (nats)')
  axes[1].axhline(0.0, color='k', linestyle='--', linewidth=1, label='true MI')
  axes[1].set_ylabel('estimate - true MI (nats; linear within +/- 0.005)')
  axes[1].set_title('estimate - true MI, band +/- 2 SE over seeds', fontsize=9)
  # Symmetric log scale, linear within +/- 0.005 nats: the i.i.d. curves (within about 1e-3
  # of the true MI) and the non-i.i.d. ones (0.1 above) on one axis, with plain tick labels.
  axes[1].set_yscale('symlog', linthresh=0.005, linscale=1.5)
  low, high = axes[1].get_ylim()
  ticks = [t for t in (-1, -0.3, -0.1, -0.03, -0.01, -0.005, -0.0025, 0, 0.0025, 0.005, 0.01,
                       0.03, 0.1, 0.3, 1) if low <= t <= high]
  axes[1].set_yticks(ticks, [f'{t:g}' for t in ticks])
  axes[1].minorticks_off()
  return _finish(fig, axes, got, 'Fig. 4c: estimators with i.i.d. and non-i.i.d. negatives')


def figure_7(table):
  """The testing loss of Sec. 3.3 (Fig. 7): |mean over seeds of I_EST/test - t| per encoder
  and estimator, one panel per target t."""
  fig, axes = _new(2)
  got = False
  for ax, t in zip(axes, (2, 4)):
    for enc, name in (('mlp', 'MLP'), ('convnet', 'ConvNet')):
      for est, est_name in (('infonce', 'I_NCE'), ('nwj', 'I_NWJ')):
        c = _curve(table, study.encoder_setting(enc, est, t), 'I_EST/test')
        if c is not None:
          steps, mean, _, ns = c
          got |= _draw(ax, steps, np.abs(mean - t), f'{name}, {est_name}', ns)
    ax.set_ylabel(f'testing loss |I_EST(test) - {t}| (nats)')
    ax.set_title(f't = {t}', fontsize=9)
  return _finish(fig, axes, got, 'Fig. 7: testing loss |I_EST - t| of the Sec. 3.3 encoders')


def figure_8(table):
  """App. G, Fig. 8: the Sec. 3.2 critics on CIFAR-10. Left: probe accuracy of the six
  (critic, estimator) settings and the CIFAR-10 pixel baseline; middle: I_NWJ (test) of the
  critics trained with I_NWJ; right: I_NCE (test) of those trained with I_NCE."""
  fig, axes = _new(3)
  names = {est: [(study.critic_setting(k, est, 'cifar10'), f'{k}, {est_name}')
                 for k in study.CRITICS]
           for est, est_name in (('nwj', 'I_NWJ'), ('infonce', 'I_NCE'))}
  # One color per setting in every panel, whichever settings have runs.
  colors = {s: f'C{i}' for i, (s, _) in enumerate(names['nwj'] + names['infonce'])}
  got = _acc_panel(axes[0], table, names['nwj'] + names['infonce'],
                   baseline=study.PIXELS_CIFAR10, colors=colors)
  for ax, est, metric in ((axes[1], 'nwj', 'I_NWJ/test'), (axes[2], 'infonce', 'I_NCE/test')):
    for s, label in names[est]:
      got |= _plot(ax, table, s, metric, label, color=colors[s])
    ax.set_ylabel(f'{metric.split("/")[0]} (test, nats)')
  if any(_curve(table, s, 'I_NCE/test') is not None for s, _ in names['infonce']):
    axes[2].axhline(LOG_BATCH, color='k', linestyle=':', linewidth=1, label='log 128')
  return _finish(fig, axes, got, 'Fig. 8 (App. G): critics on CIFAR-10 (concat = MLP critic)')


def figure_9(table):
  """App. G, Fig. 9: the Sec. 3.3 encoders on CIFAR-10. Probe accuracy at t = 2 and t = 4
  (with the CIFAR-10 pixel baseline), then the testing loss |mean I_EST/test - t| at each t."""
  fig, axes = _new(4)
  got = False
  for i, t in enumerate(study.TARGETS):
    curves = [(study.encoder_setting(enc, est, t, 'cifar10'), f'{name}, {est_name}')
              for enc, name in (('mlp', 'MLP'), ('convnet', 'ConvNet'))
              for est, est_name in (('infonce', 'I_NCE'), ('nwj', 'I_NWJ'))]
    # The same color for an (encoder, estimator) pair in every panel.
    colors = {s: f'C{j}' for j, (s, _) in enumerate(curves)}
    got |= _acc_panel(axes[i], table, curves, baseline=study.PIXELS_CIFAR10, colors=colors)
    axes[i].set_title(f'accuracy, t = {t}', fontsize=9)
    ax = axes[2 + i]
    for s, label in curves:
      c = _curve(table, s, 'I_EST/test')
      if c is not None:
        steps, mean, _, ns = c
        got |= _draw(ax, steps, np.abs(mean - t), label, ns, color=colors[s])
    ax.set_ylabel(f'testing loss |I_EST(test) - {t}| (nats)')
    ax.set_title(f'testing loss, t = {t}', fontsize=9)
  return _finish(fig, axes, got, 'Fig. 9 (App. G): encoders on CIFAR-10 at min |I_EST - t|')


def write_figures(table, figures_dir, flags=None, names=None):
  """Writes the figures with data as <figures_dir>/<name>.png; returns {name: path|None}.

  Each PNG is replaced atomically (``files.write_atomic``: a temporary file in figures_dir,
  then a rename), so a report stopped halfway leaves every figure whole, old or new. A
  figure without data is not drawn and its PNG of an earlier report (of runs that are gone)
  is removed.

  Args:
    table: the results Table.
    figures_dir: where the PNGs go.
    flags: {setting: [arguments]} of settings whose runs were started with other arguments
      than the study's; the title of every figure that reads one says so (``flag_title``).
    names: the figures to write (default: all of FIGURES); the others' files are left alone.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(figures_dir, exist_ok=True)
  reads = study.figure_settings()
  out = {}
  for name, fn in FIGURES.items():
    if names is not None and name not in names:
      continue
    fig = fn(table)
    if fig is not None and flags:
      flag_title(fig, {s: flags[s] for s in reads.get(name, ()) if flags.get(s)})
    path = os.path.join(figures_dir, f'{name}.png')
    if fig is None:
      out[name] = None
      files.remove(path)  # A stale figure of runs that are gone (if any).
      continue
    png = io.BytesIO()
    fig.savefig(png, format='png', dpi=DPI)
    plt.close(fig)
    files.write_atomic(path, png.getvalue())
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




# ------------------------------------------------- beyond the paper: metric learning, negatives

def _final_point(table, setting, metric, scale=1.0):
  """(mean, sd or 0, n) of a setting's final value, or None (absent or not finite)."""
  row = table.final(setting, metric)
  if row is None or not math.isfinite(row['mean']):
    return None
  sd = row['sd'] if math.isfinite(row['sd']) else 0.0
  return row['mean'] * scale, sd * scale, row['n']


def _relabel(fig, axes, xlabels):
  """Replaces _finish's step axis labels (these figures are not curves over steps)."""
  if fig is not None:
    for ax, label in zip(axes, xlabels):
      ax.set_xlabel(label)
    fig.tight_layout()
  return fig


def figure_metric(table):
  """Beyond the paper (Sec. 4, App. C; claim study.METRIC_CLAIM): final probe accuracy of the
  metric-learning objectives beside the MI-trained references, grouped by encoder.

  Bars: mean over seeds of the final linear-probe accuracy (the paper's probe), error bars
  +/- 1 SD, for I_NCE, I_NWJ (``study.metric_setting(est, enc)``), the K-pair loss with a
  shared and with separate encoders, and the triplet loss; diamonds: the final k-NN probe
  accuracy (ACC_KNN) where the runs logged it. None without data.
  """
  from mi_tf.report.results import ACC_KNN  # pylint: disable=g-import-not-at-top
  objectives = (('infonce', 'I_NCE'), ('nwj', 'I_NWJ'), ('kpair_shared', 'K-pair, shared'),
                ('kpair_separate', 'K-pair, separate'), ('triplet', 'triplet'))
  fig, (ax,) = _new()
  width = 0.8 / len(objectives)
  got = False
  values = []  # Every drawn value, for the y range.
  knn_label = 'k-NN probe (k = 20)'
  for j, (obj, label) in enumerate(objectives):
    color = f'C{j}'
    for i, enc in enumerate(study.ENCODERS):
      setting = study.metric_setting(obj, enc)
      x = i + (j - (len(objectives) - 1) / 2) * width
      point = _final_point(table, setting, ACC, 100)
      if point is not None:
        mean, sd, n = point
        ax.bar(x, mean, width, yerr=sd, capsize=2, color=color,
               label=label if not any(label == t for t in ax.get_legend_handles_labels()[1])
               else None)
        ax.annotate(f'n={n}', (x, mean), ha='center', va='bottom', fontsize=6)
        values.append(mean)
        got = True
      knn = _final_point(table, setting, ACC_KNN, 100)
      if knn is not None:
        ax.plot(x, knn[0], 'D', color='k', markersize=4,
                label=knn_label if knn_label not in ax.get_legend_handles_labels()[1]
                else None)
        values.append(knn[0])
        got = True
  ax.set_xticks(range(len(study.ENCODERS)))
  ax.set_xticklabels([{'mlp': 'MLP', 'convnet': 'ConvNet'}.get(e, e) for e in study.ENCODERS])
  ax.set_ylabel('test accuracy (%)')
  if values:
    ax.set_ylim(max(0.0, min(values) - 10), min(100.0, max(values) + 3))
  fig = _finish(fig, [ax], got, 'Beyond the paper: metric-learning objectives vs I_NCE, '
                'I_NWJ\n(final probe accuracy, mean +/- SD over seeds)')
  if fig is not None:  # The legend below the axes, clear of the bars.
    ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.12), ncol=3)
  return _relabel(fig, [ax], ['encoder'])


def figure_negatives(table):
  """Beyond the paper (Sec. 4, App. C; claim study.NEGATIVES_CLAIM): the number and the
  hardness of the negatives.

  Left: final probe accuracy (mean +/- SD over seeds) against K, the I_NCE batch size
  (``study.negatives_setting``), on a log2 axis, with the K = 128 runs that keep 127 of a 512
  batch's negatives, random or hard (``study.mining_setting``), marked at K = 128. Right:
  final I_NCE/test (over blocks of the evaluation batch, 128 pairs) and the final
  training-batch I_EST (over the K columns trained on) against K, with the bound log K.
  None without data.
  """
  fig, axes = _new(2)
  ks = study.NEGATIVES_BATCH_SIZES
  got = False
  for ax, metric, split, label, scale in (
      (axes[0], ACC, 'eval', 'all B - 1 negatives', 100),
      (axes[1], 'I_NCE/test', 'eval', 'I_NCE (test, blocks of 128)', 1),
      (axes[1], 'I_EST', 'train', 'I_EST (training batch, K columns)', 1)):
    points = []
    for k in ks:
      row = table.final(study.negatives_setting(k), metric, split)
      if row is not None and math.isfinite(row['mean']):
        sd = row['sd'] if math.isfinite(row['sd']) else 0.0
        points.append((k, row['mean'] * scale, sd * scale, row['n']))
    if points:
      k_, mean, sd, n = zip(*points)
      ns = sorted(set(n))
      ax.errorbar(k_, mean, yerr=sd, marker='o', capsize=3,
                  label=f'{label} (n={ns[0]}' + (f'-{ns[-1]})' if len(ns) > 1 else ')'))
      got = True
  for m, marker in (('random', 's'), ('hard', '^')):
    setting = study.mining_setting(m)
    for ax, metric, split, scale in ((axes[0], ACC, 'eval', 100),
                                     (axes[1], 'I_NCE/test', 'eval', 1),
                                     (axes[1], 'I_EST', 'train', 1)):
      row = table.final(setting, metric, split)
      if row is not None and math.isfinite(row['mean']):
        sd = row['sd'] if math.isfinite(row['sd']) else 0.0
        ax.errorbar([128], [row['mean'] * scale], yerr=[sd * scale], marker=marker,
                    linestyle='none', capsize=3, markersize=8,
                    label=f'{m} 127 of 511 negatives, K = 128 ({metric}, n={row["n"]})')
        got = True
  axes[1].plot(ks, [math.log(k) for k in ks], color='gray', linestyle=':', linewidth=1,
               label='log K')
  axes[0].set_ylabel('test accuracy (%)')
  axes[1].set_ylabel('nats')
  for ax in axes:
    ax.set_xscale('log', base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
  fig = _finish(fig, axes, got, 'Beyond the paper: negatives (I_NCE batch size K; hard vs '
                'random negatives at K = 128)')
  return _relabel(fig, axes, ['K (negatives + 1)'] * 2)


# ------------------------------------------------- beyond the paper: the family of bounds

BOUND_MARKERS = {'bilinear': 'o', 'separable': 's', 'concat': '^', 'mlp': 'D', 'convnet': 'v'}
# Final estimates beyond +/- this many nats are drawn at the edge of the axis, marked and
# labelled with their value: they come from critics whose estimate diverged (I_NWJ of an
# I_NCE-trained critic near -1e23, NWJ on a JS-trained critic near -1e5, SMILE at a target of
# 4 nats near 4e20), while every MI estimate of a working run here lies within 0-10 nats
# (InfoNCE under log 128 = 4.85). On one axis with them, the others would collapse into a line.
OFFSCALE_NATS = 25.0


def _bound_points(ax, table, entries, metric, colors, limit=OFFSCALE_NATS):
  """One marker per (estimator, model) setting at (final metric, final accuracy in %), error
  bars = SD over seeds; SMILE (study.NOT_LOWER_BOUNDS) hollow. The x axis spans the points
  within +/- ``limit`` with their error bars (and 0); a point beyond it sits at the nearer edge
  as an outward triangle with its value written beside it. True if any was drawn."""
  points = []
  for est, model, setting in entries:
    x, y = _final_point(table, setting, metric), _final_point(table, setting, ACC, 100)
    if x is not None and y is not None:
      points.append((est, model, x, y))
  if not points:
    return False
  inside = [x for _, _, x, _ in points if abs(x[0]) <= limit]
  low = min([0.0] + [max(m - sd, -limit) for m, sd, _ in inside])
  high = max([1.0] + [min(m + sd, limit) for m, sd, _ in inside])
  pad = 0.06 * (high - low)
  low, high = low - pad, high + pad
  for est, model, x, y in points:
    hollow = est in study.NOT_LOWER_BOUNDS
    style = dict(color=colors[est], markerfacecolor='none' if hollow else colors[est],
                 linestyle='none', capsize=2, markersize=7)
    if abs(x[0]) <= limit:
      ax.errorbar([x[0]], [y[0]], xerr=[x[1]], yerr=[y[1]], marker=BOUND_MARKERS[model],
                  **style)
      continue
    edge = low + pad / 2 if x[0] < 0 else high - pad / 2
    ax.errorbar([edge], [y[0]], yerr=[y[1]], marker='<' if x[0] < 0 else '>', **style)
    ax.annotate(f'{x[0]:.2g}', (edge, y[0]), textcoords='offset points',
                xytext=(6 if x[0] < 0 else -6, 4), ha='left' if x[0] < 0 else 'right',
                fontsize=6, color=colors[est])
  ax.set_xlim(low, high)
  return True


def _bound_legend(ax, colors, models):
  """Legend: a color per estimator (SMILE: not a lower bound), a marker per critic/encoder."""
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  handles = [Line2D([], [], color=colors[e], marker='o', linestyle='none',
                    markerfacecolor='none' if e in study.NOT_LOWER_BOUNDS else colors[e],
                    label=e + (' (not a lower bound)' if e in study.NOT_LOWER_BOUNDS else ''))
             for e in study.BOUND_ESTIMATORS]
  handles += [Line2D([], [], color='gray', marker=BOUND_MARKERS[m], linestyle='none', label=m)
              for m in models]
  ax.legend(handles=handles, fontsize=7)


def figure_bounds(table):
  """Beyond the paper (claim study.BOUNDS_CLAIM): does a tighter bound give a better
  representation? Final probe accuracy of every (estimator, critic) Sec. 3.2 setting of
  study.bound_critic_settings() against (a) the trained bound's own final I_EST/test and (b)
  the same critic's I_NWJ/test; (c) the t = 4 encoder settings (study.bound_encoder_settings())
  against their I_EST/test. A color per estimator, a marker per critic (encoder), error bars =
  SD over seeds, SMILE hollow (no lower bound); a diverged estimate (beyond +/-
  OFFSCALE_NATS) at the axis' edge with its value; settings without runs are absent."""
  fig, axes = _new(3)
  colors = {e: f'C{i}' for i, e in enumerate(study.BOUND_ESTIMATORS)}
  critics = [(e, k, study.critic_setting(k, e)) for e in study.BOUND_ESTIMATORS
             for k in study.CRITICS]
  encoders = [(e, a, study.encoder_setting(a, e, t)) for e in study.BOUND_ESTIMATORS
              for t in study.FAMILY_TARGETS for a in study.ENCODERS]
  got = _bound_points(axes[0], table, critics, 'I_EST/test', colors)
  got |= _bound_points(axes[1], table, critics, 'I_NWJ/test', colors)
  got |= _bound_points(axes[2], table, encoders, 'I_EST/test', colors)
  targets = ', '.join(map(str, study.FAMILY_TARGETS))
  for ax, title in zip(axes, ('Sec. 3.2 critics: the trained bound',
                              'Sec. 3.2 critics: I_NWJ of the same critic',
                              f'Sec. 3.3 encoders, t = {targets}')):
    ax.set_ylabel('test accuracy (%)')
    ax.set_title(title, fontsize=9)
  fig = _finish(fig, axes, got, 'Beyond the paper: probe accuracy against the bound (family '
                'of MI bounds, MNIST)')
  if fig is not None:
    _bound_legend(axes[0], colors, study.CRITICS)
    _bound_legend(axes[2], colors, study.ENCODERS)
  off = f'; beyond +/- {OFFSCALE_NATS:g}: at the edge, value written'
  return _relabel(fig, axes, [f'final I_EST/test (nats{off})', f'final I_NWJ/test (nats{off})',
                              f'final I_EST/test (nats{off})'])


# The report's figures by name (the PNG file names), the paper's first; every figure_* above.
FIGURES = {
    'fig1a': figure_1a, 'fig1b': figure_1b, 'fig1c': figure_1c, 'fig2': figure_2,
    'fig3': figure_3, 'fig4a': figure_4a, 'fig4b': figure_4b, 'fig4c': figure_4c,
    'fig5': figure_5, 'fig6': figure_6, 'fig7': figure_7, 'fig8': figure_8, 'fig9': figure_9,
    # Beyond the paper.
    'bounds': figure_bounds, 'metric': figure_metric, 'negatives': figure_negatives,
}
