"""Training helpers: fit, History, EarlyStopping, evaluate and the accuracy metric.

`fit` is the loop every training script writes, spelled out once:

    for epoch in range(epochs):
        model.train()
        for *inputs, target in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(*inputs), target)
            loss.backward()
            optimizer.step()
        validate under model.eval() and fg.no_grad()
        step the scheduler; ask early stopping whether to go on

Losses and metrics of an epoch are averages over its batches weighted by
batch size (for a mean-reduced loss: the mean over the epoch's samples).
The training loss of a batch is the one computed before that batch's step.
"""
import math
import numbers
import sys
import time

import numpy as np

from . import distributed
from ._core import core
from .autograd import no_grad
from .optim.lr_scheduler import ReduceLROnPlateau

__all__ = ["fit", "evaluate", "History", "EarlyStopping", "Callback", "accuracy"]


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------

class History:
    """Per-epoch records of a `fit` run.

    `history.history` maps 'train_loss', 'val_loss' and 'val_<metric>' to
    lists with one value per epoch; `history[key]` is the same list and
    `len(history)` the number of epochs run.
    """

    def __init__(self):
        self.history = {}

    def _append(self, record):
        for key, value in record.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key):
        try:
            return self.history[key]
        except KeyError:
            raise KeyError("History has no %r; it has %s"
                           % (key, ", ".join(map(repr, self.history)) or "no records")) from None

    def __contains__(self, key):
        return key in self.history

    def __len__(self):
        return len(self.history.get("train_loss", ()))

    def keys(self):
        return self.history.keys()

    def __repr__(self):
        return "History(%d epochs: %s)" % (len(self), ", ".join(self.history))

    def plot(self, path):
        """Write the curves to a PNG at `path` (losses on the left, metrics on the right)."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib, which is not installed "
                              "(pip install matplotlib): %s" % exc) from exc
        losses = [k for k in self.history if k.endswith("loss")]
        others = [k for k in self.history if k not in losses]
        # The pyplot-free API: no global figure state, no GUI backend chosen.
        fig = Figure(figsize=(10 if others else 6, 4))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2 if others else 1, squeeze=False)[0]
        for ax, keys, label in zip(axes, (losses, others), ("loss", "metric")):
            for key in keys:
                values = self.history[key]
                ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if keys:
                ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")


# ---------------------------------------------------------------------------
# Early stopping
# ---------------------------------------------------------------------------

class EarlyStopping:
    """Stop training once the monitored value has not improved for `patience` epochs.

    An epoch improves when value < best - min_delta (mode='min', for losses)
    or value > best + min_delta (mode='max', for accuracies).  With
    `restore_best=True`, fit puts the weights of the best epoch back at the end.
    """

    def __init__(self, patience=5, min_delta=0.0, monitor="val_loss", restore_best=True,
                 mode="min"):
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) \
                or patience < 0:
            raise ValueError("EarlyStopping: patience must be an integer >= 0, got %r"
                             % (patience,))
        if not min_delta >= 0:
            raise ValueError("EarlyStopping: min_delta must be >= 0, got %r" % (min_delta,))
        if mode not in ("min", "max"):
            raise ValueError("EarlyStopping: mode must be 'min' or 'max', got %r" % (mode,))
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.monitor = monitor
        self.restore_best = bool(restore_best)
        self.mode = mode
        self.reset()

    def reset(self):
        """Forget the previous run (fit calls this at the start)."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_state = None
        self.wait = 0
        self.epoch = -1
        self.stopped_epoch = None

    def improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value, model=None):
        """Record one epoch's value; True when training should stop."""
        self.epoch += 1
        value = float(value)
        if self.improved(value):
            self.best = value
            self.best_epoch = self.epoch
            self.wait = 0
            if self.restore_best and model is not None:
                self.best_state = model.state_dict()
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = self.epoch
            return True
        return False

    def restore(self, model):
        """Load the best epoch's weights into `model` (if any epoch improved)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def __repr__(self):
        return ("EarlyStopping(patience=%d, min_delta=%g, monitor=%r, restore_best=%s, mode=%r)"
                % (self.patience, self.min_delta, self.monitor, self.restore_best, self.mode))


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def _values(x):
    return np.asarray(x.numpy() if isinstance(x, core.TensorBase) else x)


def accuracy(outputs, targets, threshold=0.5):
    """Fraction of correct predictions.

    Several columns: the predicted class is the argmax of the last axis;
    targets are class indices, or one-hot / probability rows.  One column
    (or 1-D outputs): outputs are probabilities of class 1, predicted when
    > threshold (use threshold=0 for logits).
    """
    out, target = _values(outputs), _values(targets)
    if out.ndim >= 2 and out.shape[-1] > 1:
        predicted = out.argmax(axis=-1)
        if target.ndim == out.ndim:
            target = target.argmax(axis=-1)
    else:
        predicted = (out > threshold).astype(np.int64)
    target = target.reshape(predicted.shape) if target.size == predicted.size else target
    if target.shape != predicted.shape:
        raise ValueError("accuracy: %d predictions (outputs of shape %s) but targets of shape %s"
                         % (predicted.size, out.shape, target.shape))
    if predicted.size == 0:
        return math.nan
    return float(np.mean(predicted == target))


def _metric_name(metric):
    name = getattr(metric, "__name__", None) or type(metric).__name__
    return name


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------

def _describe(record):
    return "  ".join("%s %.4g" % (k, v) for k, v in record.items())


class _PlainBar:
    """A one-line bar on stderr; redrawn (at most 10 times a second) only on a terminal."""

    WIDTH = 24

    def __init__(self, epochs):
        self.epochs = epochs
        self.stream = sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()

    def start(self, epoch, total):
        self.epoch, self.total, self.done, self.last = epoch, total, 0, 0.0

    def _line(self, text):
        if self.total:
            filled = self.WIDTH * self.done // self.total
            bar = "[%s%s] %d/%d" % ("#" * filled, "." * (self.WIDTH - filled), self.done,
                                    self.total)
        else:
            bar = "%d batches" % self.done
        return "epoch %d/%d %s  %s" % (self.epoch + 1, self.epochs, bar, text)

    def update(self, loss):
        self.done += 1
        if not self.live:
            return
        now = time.monotonic()
        if now - self.last >= 0.1 or self.done == self.total:
            self.last = now
            self.stream.write("\r" + self._line("loss %.4g" % loss))
            self.stream.flush()

    def finish(self, record):
        self.stream.write(("\r" if self.live else "") + self._line(_describe(record)) + "\n")
        self.stream.flush()

    def close(self):
        pass


class _TqdmBar:
    """The same bar through tqdm (used when it is installed)."""

    def __init__(self, tqdm, epochs):
        self.tqdm, self.epochs, self.bar = tqdm, epochs, None

    def start(self, epoch, total):
        self.bar = self.tqdm(total=total, desc="epoch %d/%d" % (epoch + 1, self.epochs),
                             file=sys.stderr, leave=True, dynamic_ncols=True)

    def update(self, loss):
        self.bar.update(1)
        self.bar.set_postfix_str("loss %.4g" % loss, refresh=False)

    def finish(self, record):
        self.bar.set_postfix_str(_describe(record))
        self.bar.close()
        self.bar = None

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _NoBar:
    def start(self, epoch, total):
        pass

    def update(self, loss):
        pass

    def finish(self, record):
        pass

    def close(self):
        pass


def _progress(enabled, epochs):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(epochs)
    return _TqdmBar(tqdm, epochs)


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------

def _split(batch, where):
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        size = len(batch) if isinstance(batch, (tuple, list)) else 1
        raise ValueError("%s: each batch must be (inputs..., targets), got a batch of %d "
                         "tensor(s)" % (where, size))
    return tuple(batch[:-1]), batch[-1]


def _batch_size(target):
    shape = getattr(target, "shape", None)
    return shape[0] if shape else 1


def evaluate(model, loss_fn, loader, metrics=(), prefix="val_"):
    """Average loss and metrics over `loader` under model.eval() and no_grad.

    Returns {'<prefix>loss': ..., '<prefix><metric name>': ...}; averages are
    weighted by batch size.  The model's train/eval mode is restored afterwards.
    """
    was_training = getattr(model, "training", False)
    model.eval()
    totals = [0.0] * (1 + len(metrics))
    count = 0
    try:
        with no_grad():
            for batch in loader:
                inputs, target = _split(batch, "evaluate")
                output = model(*inputs)
                n = _batch_size(target)
                totals[0] += float(loss_fn(output, target).item()) * n
                for i, metric in enumerate(metrics, 1):
                    totals[i] += float(metric(output, target)) * n
                count += n
    finally:
        if was_training:
            model.train()
    names = ["loss"] + [_metric_name(m) for m in metrics]
    return {prefix + name: (total / count if count else math.nan)
            for name, total in zip(names, totals)}


class Callback:
    """Hooks `fit` calls (override the ones you need; each does nothing here).

    `logs` is a dict: for a batch, its 'loss' and 'size'; for an epoch, that
    epoch's record ('train_loss', 'val_loss', 'val_<metric>').  An
    on_epoch_end that returns True stops training after that epoch.
    """

    def on_train_begin(self, model):
        pass

    def on_epoch_begin(self, epoch):
        pass

    def on_batch_end(self, batch, logs):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, history):
        pass


def _check_callbacks(callbacks):
    callbacks = list(callbacks)
    hooks = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")
    for cb in callbacks:
        if not any(callable(getattr(cb, h, None)) for h in hooks):
            raise TypeError("fit: a callback needs at least one of %s, got %r"
                            % (", ".join(hooks), cb))
    return callbacks


def _call(callbacks, hook, *args):
    stop = False
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None and fn(*args) is True:
            stop = True
    return stop


def fit(model, loss_fn, optimizer, train_loader, epochs, val_loader=None, metrics=(),
        early_stopping=None, scheduler=None, progress=True, callbacks=(), log=None):
    """Train `model` for `epochs` epochs; returns a History of per-epoch averages.

    Every batch of `train_loader` is (inputs..., targets): `model(*inputs)` is
    compared with the targets by `loss_fn`.  `val_loader` adds 'val_loss' and
    one 'val_<name>' per metric (`metric(outputs, targets) -> float`).
    `scheduler.step()` runs once per epoch (ReduceLROnPlateau gets the
    monitored value: early stopping's, else val_loss, else train_loss).
    `early_stopping` (an EarlyStopping) may end training early and restores
    the best weights at the end.  `progress` shows a bar on stderr.
    `callbacks`: objects with any of fg.Callback's hooks (on_batch_end,
    on_epoch_end, ...), called in order.  `log`: a function given one line
    per epoch (`print`, or a logging.Logger's `info`), e.g.
    "epoch 3/10: train_loss 0.1234, val_loss 0.2345".
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError("fit: epochs must be an integer >= 0, got %r" % (epochs,))
    callbacks = _check_callbacks(callbacks)
    if log is not None and not callable(log):
        raise TypeError("fit: log must be callable with one str (e.g. print), got %r" % (log,))
    metrics = list(metrics)
    for metric in metrics:
        if not callable(metric):
            raise TypeError("fit: a metric must be callable (outputs, targets) -> float, got %r"
                            % (metric,))
    if metrics and val_loader is None:
        raise ValueError("fit: metrics are computed on the validation data; pass val_loader")
    keys = ["train_loss"]
    if val_loader is not None:
        keys += ["val_loss"] + ["val_" + _metric_name(m) for m in metrics]
    if early_stopping is not None:
        if early_stopping.monitor not in keys:
            raise ValueError("fit: early_stopping monitors %r, but this run records only %s%s"
                             % (early_stopping.monitor, ", ".join(keys),
                                "" if val_loader is not None else " (no val_loader)"))
        early_stopping.reset()
    monitored = early_stopping.monitor if early_stopping is not None \
        else ("val_loss" if val_loader is not None else "train_loss")
    try:
        n_batches = len(train_loader)
    except TypeError:
        n_batches = None

    history = History()
    # Every rank of a data-parallel job runs this loop; rank 0 alone reports.
    bar = _progress(progress and distributed.rank() == 0, epochs)
    _call(callbacks, "on_train_begin", model)
    try:
        for epoch in range(epochs):
            model.train()
            _call(callbacks, "on_epoch_begin", epoch)
            bar.start(epoch, n_batches)
            total, count = 0.0, 0
            for i, batch in enumerate(train_loader):
                inputs, target = _split(batch, "fit")
                optimizer.zero_grad()
                loss = loss_fn(model(*inputs), target)
                loss.backward()
                optimizer.step()
                n = _batch_size(target)
                value = float(loss.item())
                total += value * n
                count += n
                bar.update(total / count)
                if callbacks:
                    _call(callbacks, "on_batch_end", i, {"loss": value, "size": n})
            # Averaged over the ranks (identical floats on each), so the history,
            # the scheduler and early stopping agree everywhere.
            record = distributed.average_metrics(
                {"train_loss": total / count if count else math.nan}, weight=count)
            if val_loader is not None:
                record.update(distributed.average_metrics(
                    evaluate(model, loss_fn, val_loader, metrics)))
            history._append(record)
            bar.finish(record)
            if log is not None and distributed.rank() == 0:
                log("epoch %d/%d: %s" % (epoch + 1, epochs, ", ".join(
                    "%s %.4f" % (k, v) for k, v in record.items())))
            stop = _call(callbacks, "on_epoch_end", epoch, dict(record))
            if scheduler is not None:
                if isinstance(scheduler, ReduceLROnPlateau):
                    scheduler.step(record[monitored])
                else:
                    scheduler.step()
            if early_stopping is not None and early_stopping.step(record[monitored], model):
                break
            if stop:
                break
    finally:
        bar.close()
    if early_stopping is not None and early_stopping.restore_best:
        early_stopping.restore(model)
    _call(callbacks, "on_train_end", history)
    return history
