"""scikit-learn's digits with a 64-128-10 MLP, fg.fit and early stopping.

Mini-batches of 32, SGD with momentum, a validation split for early
stopping; prints the test accuracy and writes digits_history.png.

    python examples/digits.py [--out digits_history.png]
"""
import argparse

import numpy as np

import fastgrad as fg
from fastgrad import nn, optim
from fastgrad.data import DataLoader, TensorDataset


def accuracy(outputs, targets):
    return float((outputs.numpy().argmax(axis=1) == targets.numpy()).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="digits_history.png")
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    from sklearn.datasets import load_digits    # bundled with scikit-learn: no download

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    test, val, train = order[:360], order[360:660], order[660:]

    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_loader = DataLoader(TensorDataset(x[train], y[train]), batch_size=32, shuffle=True,
                              seed=0)
    val_loader = DataLoader(TensorDataset(x[val], y[val]), batch_size=256)
    history = fg.fit(model, nn.CrossEntropyLoss(), opt, train_loader, epochs=args.epochs,
                     val_loader=val_loader, metrics=[accuracy],
                     early_stopping=fg.EarlyStopping(patience=8), progress=False)
    model.eval()
    with fg.no_grad():
        test_acc = accuracy(model(fg.tensor(x[test])), fg.tensor(y[test]))
    print("epochs run: %d (early stopping, patience 8)" % len(history))
    print("best validation loss: %.4f" % min(history["val_loss"]))
    print("test accuracy: %.4f" % test_acc)
    try:
        history.plot(args.out)
        print("wrote", args.out)
    except ImportError as exc:
        print("no picture:", exc)


if __name__ == "__main__":
    main()
