"""A user's training script, fully annotated: `mypy --strict` must accept it."""
from __future__ import annotations

import io

import numpy as np

import fastgrad as fg
from fastgrad import nn, optim
from fastgrad.nn import functional as F
from fastgrad.optim.lr_scheduler import StepLR
from fastgrad.utils.data import DataLoader, TensorDataset


class MLP(nn.Module):
    def __init__(self, n_in: int, n_hidden: int, n_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hidden)
        self.fc2 = nn.Linear(n_hidden, n_out)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        h = F.relu(self.fc1(x))
        return self.fc2(self.drop(h))


def accuracy(outputs: fg.Tensor, targets: fg.Tensor) -> float:
    predicted = outputs.argmax(dim=1)
    return float((predicted == targets).float().mean().item())


def main() -> None:
    fg.manual_seed(0)
    state = fg.get_rng_state()
    fg.set_rng_state(state)

    # tensors and ops
    a = fg.randn(4, 3, requires_grad=True)
    b = fg.tensor([[1.0, 2.0, 3.0]], dtype=fg.float32)
    c = (a * b + 1.0).exp().sum(dim=1).mean()
    c.backward()
    grad = a.grad
    assert grad is not None
    shape: tuple[int, ...] = grad.shape
    total: float = float(fg.matmul(a, a.T).sum().item())
    stacked = fg.stack([a, a], dim=0).reshape(2, -1)
    arr: np.ndarray = stacked.detach().numpy()
    with fg.no_grad():
        d = fg.where(a > 0, a, fg.zeros_like(a))
    print(shape, total, arr.shape, d.requires_grad, fg.backend())

    # a model, a loss, an optimizer and a schedule
    x = fg.randn(64, 3)
    y = fg.randint(0, 2, (64,))
    model = MLP(3, 16, 2)
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.0)
    sched = StepLR(opt, step_size=5, gamma=0.5)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    for epoch in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        sched.step()
        print(epoch, sched.get_last_lr())
    n_params = sum(p.numel() for p in model.parameters())
    names = [name for name, _ in model.named_parameters()]
    print(n_params, names)

    # saving and loading, to a path and to a file object
    buffer = io.BytesIO()
    fg.save({"model": model.state_dict(), "epoch": 2}, buffer)
    buffer.seek(0)
    restored = fg.load(buffer)
    model.load_state_dict(restored["model"])

    # the training loop helper
    history = fg.fit(model, loss_fn, optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                     loader, epochs=2, val_loader=loader, metrics=[accuracy], progress=False)
    losses: list[float] = history["train_loss"]
    print(len(history), losses[-1])
    print(fg.summary(model, (1, 3)))
    model.eval()


if __name__ == "__main__":
    main()
