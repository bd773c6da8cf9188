"""fit, History, EarlyStopping, evaluate, accuracy: fit must reproduce a readable hand loop."""
import sys

import numpy as np
import pytest

rng = np.random.default_rng(42)
XS = rng.standard_normal((20, 3))
TS = (XS @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.standard_normal((20, 1)))
XV = rng.standard_normal((7, 3))
TV = XV @ np.array([[1.0], [-2.0], [0.5]]) + 0.3


class TinyLinear:
    """Just enough of nn.Module for fit: a linear map y = x @ w + b."""

    def __init__(self, fg, w0=None, b0=None):
        self.fg = fg
        self.w = fg.tensor(np.zeros((3, 1)) if w0 is None else w0, requires_grad=True)
        self.b = fg.tensor(np.zeros(1) if b0 is None else b0, requires_grad=True)
        self.training = True
        self.calls = []                 # (training, grad enabled) per forward

    def __call__(self, x):
        self.calls.append((self.training, self.fg.is_grad_enabled()))
        return x @ self.w + self.b

    def parameters(self):
        return [self.w, self.b]

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        return {"w": self.w.numpy().copy(), "b": self.b.numpy().copy()}

    def load_state_dict(self, sd):
        self.w.data[...] = sd["w"]
        self.b.data[...] = sd["b"]


def mse(out, target):
    return ((out - target) ** 2).mean()


def loaders(fg, batch_size=4, seed=0):
    train = fg.data.DataLoader(fg.data.TensorDataset(XS, TS), batch_size=batch_size,
                               shuffle=True, seed=seed)
    val = fg.data.DataLoader(fg.data.TensorDataset(XV, TV), batch_size=3)
    return train, val


def test_fit_equals_a_readable_hand_loop(fg):
    model = TinyLinear(fg)
    opt = fg.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    train, val = loaders(fg)
    history = fg.fit(model, mse, opt, train, epochs=4, val_loader=val, progress=False)

    hand = TinyLinear(fg)
    hand_opt = fg.optim.SGD(hand.parameters(), lr=0.05, momentum=0.5)
    train, val = loaders(fg)
    train_losses, val_losses = [], []
    for epoch in range(4):
        total = 0.0
        for xb, tb in train:
            hand_opt.zero_grad()
            loss = mse(hand(xb), tb)
            loss.backward()
            hand_opt.step()
            total += loss.item() * len(xb)
        train_losses.append(total / len(XS))
        with fg.no_grad():
            total = sum(mse(hand(xb), tb).item() * len(xb) for xb, tb in val)
        val_losses.append(total / len(XV))

    assert history["train_loss"] == pytest.approx(train_losses, rel=1e-12)
    assert history["val_loss"] == pytest.approx(val_losses, rel=1e-12)
    assert history.history["val_loss"] is history["val_loss"]
    assert len(history) == 4
    np.testing.assert_allclose(model.w.numpy(), hand.w.numpy(), rtol=1e-12)
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_fit_modes_and_grad_recording(fg):
    model = TinyLinear(fg)
    train, val = loaders(fg, batch_size=10)
    fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.01), train, 1, val_loader=val,
           progress=False)
    # two training batches in train mode with gradients, then 3 validation batches
    assert model.calls == [(True, True)] * 2 + [(False, False)] * 3


def test_fit_without_validation(fg):
    model = TinyLinear(fg)
    train, _ = loaders(fg)
    history = fg.fit(model, mse, fg.optim.Adam(model.parameters(), lr=0.1), train, 3,
                     progress=False)
    assert list(history.keys()) == ["train_loss"]
    assert len(history) == 3


def test_metrics_are_recorded_per_epoch(fg):
    def mean_abs_error(out, target):
        return float(np.abs(out.numpy() - target.numpy()).mean())

    model = TinyLinear(fg)
    train, val = loaders(fg)
    history = fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.05), train, 2,
                     val_loader=val, metrics=[mean_abs_error], progress=False)
    assert set(history.keys()) == {"train_loss", "val_loss", "val_mean_abs_error"}
    # weighted by batch size: the mean over all 7 validation samples
    expected = float(np.abs(XV @ model.w.numpy() + model.b.numpy() - TV).mean())
    assert history["val_mean_abs_error"][-1] == pytest.approx(expected, rel=1e-12)


def test_fit_argument_errors_change_nothing(fg):
    model = TinyLinear(fg)
    train, val = loaders(fg)
    opt = fg.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="val_loader"):
        fg.fit(model, mse, opt, train, 2, metrics=[fg.training.accuracy], progress=False)
    with pytest.raises(ValueError, match="monitors 'val_loss'"):
        fg.fit(model, mse, opt, train, 2, early_stopping=fg.EarlyStopping(), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fg.fit(model, mse, opt, train, -1, progress=False)
    np.testing.assert_array_equal(model.w.numpy(), np.zeros((3, 1)))
    assert model.calls == []


def test_batches_need_inputs_and_targets(fg):
    model = TinyLinear(fg)
    loader = fg.data.DataLoader(fg.data.TensorDataset(XS), batch_size=5)
    with pytest.raises(ValueError, match=r"\(inputs..., targets\)"):
        fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.1), loader, 1, progress=False)


# --- early stopping ---------------------------------------------------------------

def test_early_stopping_counts_epochs_without_improvement(fg):
    stopper = fg.EarlyStopping(patience=2, min_delta=0.1, restore_best=False)
    decisions = [stopper.step(v) for v in (5.0, 4.0, 4.0, 3.95)]
    # 4.0 and 3.95 are not below 4.0 - 0.1: two bad epochs in a row, stop after the fourth
    assert decisions == [False, False, False, True]
    assert stopper.best == 4.0 and stopper.best_epoch == 1 and stopper.stopped_epoch == 3
    stopper.reset()
    assert [stopper.step(v) for v in (3.0, 2.0, 1.0)] == [False, False, False]


def test_early_stopping_stops_after_patience_and_restores_best(fg):
    # Train on t = 2x, validate on t = x, starting at w = 0: the validation loss
    # falls while w approaches 1, then rises as w heads on to 2.
    x = np.linspace(-1, 1, 8).reshape(-1, 1)
    train = fg.data.DataLoader(fg.data.TensorDataset(x, 2 * x), batch_size=8)
    val = fg.data.DataLoader(fg.data.TensorDataset(x, x), batch_size=8)

    class Slope(TinyLinear):
        def __call__(self, inputs):
            return inputs * self.w

    model = Slope(fg, w0=np.zeros(1))
    stopper = fg.EarlyStopping(patience=3)
    history = fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.3), train, 50,
                     val_loader=val, early_stopping=stopper, progress=False)

    # the same run by hand: weights after each epoch
    w, weights = 0.0, []
    for _ in range(50):
        w -= 0.3 * 2 * np.mean((w * x - 2 * x) * x)
        weights.append(w)
    val_losses = [np.mean((wk * x - x) ** 2) for wk in weights]
    best = int(np.argmin(val_losses))
    assert 0 < best < 40
    assert len(history) == best + 1 + 3
    assert history["val_loss"] == pytest.approx(val_losses[:best + 4], rel=1e-10)
    assert stopper.best_epoch == best and stopper.stopped_epoch == best + 3
    assert model.w.item() == pytest.approx(weights[best], rel=1e-12)      # restored

    model = Slope(fg, w0=np.zeros(1))
    stopper = fg.EarlyStopping(patience=3, restore_best=False)
    fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.3), train, 50, val_loader=val,
           early_stopping=stopper, progress=False)
    assert model.w.item() == pytest.approx(weights[best + 3], rel=1e-12)  # the last weights


def test_early_stopping_arguments(fg):
    with pytest.raises(ValueError, match="patience"):
        fg.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta"):
        fg.EarlyStopping(min_delta=-0.1)
    with pytest.raises(ValueError, match="mode"):
        fg.EarlyStopping(mode="up")
    stopper = fg.EarlyStopping(patience=1, monitor="val_accuracy", mode="max")
    assert [stopper.step(v) for v in (0.5, 0.7, 0.7)] == [False, False, True]


# --- schedulers inside fit ---------------------------------------------------------

def test_scheduler_is_stepped_once_per_epoch(fg):
    model = TinyLinear(fg)
    opt = fg.optim.SGD(model.parameters(), lr=0.1)
    sched = fg.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    train, _ = loaders(fg)
    fg.fit(model, mse, opt, train, 5, scheduler=sched, progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 2)
    assert sched.last_epoch == 5


def test_plateau_scheduler_gets_the_monitored_value(fg):
    seen = []

    class Recording(fg.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics):
            seen.append(metrics)
            super().step(metrics)

    model = TinyLinear(fg)
    opt = fg.optim.SGD(model.parameters(), lr=0.05)
    train, val = loaders(fg)
    history = fg.fit(model, mse, opt, train, 3, val_loader=val, progress=False,
                     scheduler=Recording(opt, patience=0))
    assert seen == history["val_loss"]
    seen.clear()
    history = fg.fit(model, mse, opt, train, 2, progress=False, scheduler=Recording(opt))
    assert seen == history["train_loss"]


# --- progress, history, metrics -----------------------------------------------------

def test_progress_bar_on_stderr(fg, capsys):
    model = TinyLinear(fg)
    train, val = loaders(fg)
    fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.05), train, 2, val_loader=val)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "val_loss" in err
    fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.05), train, 2, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_history_plot(fg, tmp_path, monkeypatch):
    model = TinyLinear(fg)
    train, val = loaders(fg)
    history = fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.05), train, 2,
                     val_loader=val, progress=False)
    try:
        import matplotlib
    except ImportError:
        matplotlib = None
    if matplotlib is None:
        with pytest.raises(ImportError, match="matplotlib"):
            history.plot(tmp_path / "h.png")
    else:
        history.plot(tmp_path / "h.png")
        assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)           # as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        history.plot(tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
    with pytest.raises(KeyError, match="val_accuracy"):
        history["val_accuracy"]


def test_accuracy(fg):
    acc = fg.training.accuracy
    logits = fg.tensor(np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.1, 0.2, 0.3],
                                 [5.0, 0.0, 0.0]]))
    assert acc(logits, fg.tensor(np.array([0, 1, 2, 1]))) == 0.75
    assert acc(logits, np.eye(3)[[0, 1, 0, 0]]) == 0.75                  # one-hot targets
    assert acc(np.array([0.9, 0.2, 0.6]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert acc(np.array([[2.0], [-1.0]]), np.array([[1], [0]]), threshold=0.0) == 1.0
    with pytest.raises(ValueError, match="accuracy"):
        acc(logits, np.array([0, 1]))


def test_accuracy_as_a_fit_metric(fg):
    # two well separated classes: a linear classifier trained with a squared loss
    x = np.concatenate([rng.normal(-2, 0.3, (10, 3)), rng.normal(2, 0.3, (10, 3))])
    onehot = np.repeat(np.eye(2), 10, axis=0)

    class TwoClass(TinyLinear):
        def __init__(self, fg):
            super().__init__(fg, w0=np.zeros((3, 2)), b0=np.zeros(2))

    model = TwoClass(fg)
    data = fg.data.DataLoader(fg.data.TensorDataset(x, onehot), batch_size=5, shuffle=True,
                              seed=1)
    history = fg.fit(model, mse, fg.optim.SGD(model.parameters(), lr=0.1), data, 3,
                     val_loader=data, metrics=[fg.training.accuracy], progress=False)
    assert history["val_accuracy"][-1] == 1.0


def test_callbacks_see_every_batch_and_epoch_and_can_stop(fg):
    model = TinyLinear(fg)
    opt = fg.optim.SGD(model.parameters(), lr=0.05)
    train, val = loaders(fg, batch_size=5)
    seen = []

    class Recorder(fg.Callback):
        def on_train_begin(self, m):
            seen.append(("begin", m is model))

        def on_batch_end(self, batch, logs):
            seen.append(("batch", batch, logs["size"], round(logs["loss"], 12)))

        def on_epoch_end(self, epoch, logs):
            seen.append(("epoch", epoch, sorted(logs)))
            return epoch == 1                      # stop after the second epoch

        def on_train_end(self, history):
            seen.append(("end", len(history)))

    lines = []
    history = fg.fit(model, mse, opt, train, epochs=5, val_loader=val, progress=False,
                     callbacks=[Recorder()], log=lines.append)
    assert len(history) == 2
    assert seen[0] == ("begin", True) and seen[-1] == ("end", 2)
    batches = [s for s in seen if s[0] == "batch"]
    assert [b[1] for b in batches] == [0, 1, 2, 3] * 2 and all(b[2] == 5 for b in batches)
    # the batch losses average to the epoch's train_loss
    first = [b[3] for b in batches[:4]]
    assert np.mean(first) == pytest.approx(history["train_loss"][0], rel=1e-12)
    assert [s for s in seen if s[0] == "epoch"] == [("epoch", 0, ["train_loss", "val_loss"]),
                                                   ("epoch", 1, ["train_loss", "val_loss"])]
    assert lines[0].startswith("epoch 1/5: train_loss ") and "val_loss" in lines[0]
    assert len(lines) == 2


def test_callback_and_log_arguments_are_checked_first(fg):
    model = TinyLinear(fg)
    opt = fg.optim.SGD(model.parameters(), lr=0.05)
    train, _ = loaders(fg)
    with pytest.raises(TypeError, match="callback needs at least one of"):
        fg.fit(model, mse, opt, train, epochs=1, progress=False, callbacks=[object()])
    with pytest.raises(TypeError, match="log must be callable"):
        fg.fit(model, mse, opt, train, epochs=1, progress=False, log="print")
    assert model.calls == []                       # nothing ran
